"""The grading engine: load a student's file fresh, run one task's check, turn what happened into a verdict.

A check (minidl/assignments/checks.py, composites.py) calls the student's code and compares it with minidl's own op;
it raises ``Fail`` with a reason when something differs. ``run_check`` maps the outcome to one of

    PASS          every case agreed (forward, every gradient, central differences)
    FAIL          a reason: which part is wrong (forward, gradient of x, ...), the worst element, a hint
    NOT STARTED   the student's code still raises the starter's NotImplementedError
    ERROR         the file is missing, does not compile or import, or lacks a name the task needs

The student's code runs with its printing swallowed (so it cannot print a verdict of its own) and
NumPy's warnings silenced (an overflow shows up as a wrong value instead).
"""
import contextlib
import io
import itertools
import os
import re
import sys
import traceback
import types
import warnings

import numpy as np

from minidl.autograd import Tensor

VERDICTS = ("PASS", "FAIL", "NOT STARTED", "ERROR")
_MINIDL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHIPPED = (os.path.join(_MINIDL_DIR, "assignments", "solutions") + os.sep,
            os.path.join(_MINIDL_DIR, "assignments", "starters") + os.sep)  # student code shipped with minidl
_counter = itertools.count()


class Fail(Exception):
    """A check found a difference; the message says where."""


class Missing(Exception):
    """The student's file or namespace lacks something the task needs (verdict ERROR)."""


class Result:
    """One task's verdict: ``.task``, ``.verdict`` (PASS, FAIL, NOT STARTED, ERROR), ``.reason``, ``.passed``."""

    def __init__(self, task, verdict, reason=""):
        self.task, self.verdict = task, verdict
        # the verdict word appears once per line, as the verdict: scripts count lines with it
        self.reason = re.sub(r"\bPASS", "pass", reason, flags=re.IGNORECASE) if reason else ""

    @property
    def passed(self):
        return self.verdict == "PASS"

    def __bool__(self):
        return self.passed

    def line(self, width=22):
        return f"{self.task:<{width}} {self.verdict}" + (f"  {self.reason}" if self.reason else "")

    def __repr__(self):
        return f"Result({self.task!r}, {self.verdict!r}, {self.reason!r})"


# ---- the student's names -------------------------------------------------------------------------
class Names:
    """The names a task reads: from a loaded student file, a module or a dict such as ``globals()``."""

    def __init__(self, source, label, path=None):
        self.values = source if isinstance(source, dict) else vars(source)
        self.label, self.path = label, path

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name not in values:
            raise Missing(f"{self.label} defines no {name!r} (the starter defines it; see "
                          f"`minidl assignments list` for each task's names)")
        value = values[name]
        module = getattr(value, "__module__", None) or ""
        if module == "minidl" or module.startswith("minidl."):  # minidl's op or a shipped solution, imported
            raise Fail(f"{name} is minidl's own ({module}.{getattr(value, '__qualname__', name)}), not yours: "
                       f"write it in {self.label}")
        return value


def load_file(path):
    """Compile and run a student's file as a fresh module (no bytecode cache, nothing kept in
    sys.modules), so every check sees the file as it is now. Raises Missing naming file and line."""
    label = os.path.basename(path)
    if not os.path.isfile(path):
        raise Missing(f"missing file {path} (`minidl assignments start DIR` copies the starters)")
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise Missing(f"cannot read {path}: {e}") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise Missing(f"{label} line {e.lineno}: {type(e).__name__}: {e.msg}") from None
    name = f"minidl_student_{os.path.splitext(label)[0]}_{next(_counter)}"
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module  # during execution only: dataclasses and the like look themselves up there
    try:
        with _quiet():
            exec(code, module.__dict__)
    except Exception as e:
        raise Missing(f"{label} fails on import: {_exception_text(e, path)}") from None
    finally:
        sys.modules.pop(name, None)
    return Names(module, label, path)


# ---- running a check -----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """Swallow the student's prints and NumPy's floating-point warnings."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _student_frame(tb, path=None):
    """The innermost traceback frame in the student's code (their file, or anything outside minidl and
    the installed libraries), as 'file line N'."""
    frames = traceback.extract_tb(tb)
    if path is not None:
        mine = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
    else:
        mine = [f for f in frames
                if (not os.path.abspath(f.filename).startswith(_MINIDL_DIR + os.sep)
                    or os.path.abspath(f.filename).startswith(_SHIPPED))
                and "site-packages" not in f.filename and not f.filename.startswith(sys.prefix)
                and not f.filename.startswith(getattr(sys, "base_prefix", sys.prefix))]
    if not mine:
        return None
    f = mine[-1]
    where = os.path.basename(f.filename) if os.path.isfile(f.filename) else f.filename
    return f"{where} line {f.lineno}"


def exception_text(e, path=None):
    """'Type: message (file line N)', the line being the innermost one in the student's code."""
    return _exception_text(e, path)


def _exception_text(e, path=None):
    where = _student_frame(e.__traceback__, path)
    text = f"{type(e).__name__}: {e}".strip()
    if len(text) > 300:
        text = text[:300] + " ..."
    return text + (f" ({where})" if where else "")


def run_check(task, names):
    """Run ``task.check(names)``; return a Result. Never raises for anything the student's code does."""
    path = getattr(names, "path", None)
    try:
        with _quiet():
            task.check(names)
    except Fail as e:
        return Result(task.name, "FAIL", str(e))
    except Missing as e:
        return Result(task.name, "ERROR", str(e))
    except NotImplementedError as e:
        where = _student_frame(e.__traceback__, path)
        what = str(e).strip() or "NotImplementedError"
        return Result(task.name, "NOT STARTED", what + (f" ({where})" if where else ""))
    except RecursionError as e:
        return Result(task.name, "FAIL", f"exception: {_exception_text(e, path)}")
    except Exception as e:
        return Result(task.name, "FAIL", f"exception: {_exception_text(e, path)}")
    return Result(task.name, "PASS")


# ---- comparing arrays ----------------------------------------------------------------------------
def as_array(y, what):
    """The raw float64 array of a student's result (Tensor, array or number); Fail if it is none of these."""
    if isinstance(y, Tensor):
        y = y.data
    if isinstance(y, (tuple, list)) or y is None:
        raise Fail(f"{what}: expected one array, got {type(y).__name__}")
    try:
        return np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected an array, got {type(y).__name__}") from None


def _index(i):
    return "(" + ", ".join(str(int(v)) for v in i) + ")"


def _shift_match(got, want, close):
    """'shifted by one along axis k' when got equals want moved one step along some axis (index off by one)."""
    for ax in range(got.ndim):
        if got.shape[ax] < 3:
            continue
        for d in (1, -1):
            a, b = np.moveaxis(got, ax, 0), np.moveaxis(np.roll(want, d, axis=ax), ax, 0)
            inner = slice(1, -1)
            if close(a[inner], b[inner]):
                return f"it equals the right values shifted by {d:+d} along axis {ax}: an index off by one"
    return None


def hint(got, want):
    """A guess at the mistake from the pattern of the difference (same shapes assumed)."""
    scale = max(np.abs(want).max(initial=0.0), 1e-300)

    def close(p, q):
        return p.shape == q.shape and np.allclose(p, q, atol=1e-6 * scale, rtol=1e-5)

    if np.abs(got).max(initial=0.0) == 0.0 and scale > 1e-12:
        return "all zeros: nothing is passed back / written"
    if close(got, -want):
        return "the sign is flipped"
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and close(got, np.swapaxes(want, -1, -2)):
        return "it is the right values transposed (last two axes): a missing or extra transpose"
    nz = np.abs(want) > 1e-9 * scale
    if nz.any():
        c = float((got[nz] * want[nz]).sum() / (want[nz] ** 2).sum())
        if abs(c - 1) > 1e-3 and abs(c) > 1e-6 and close(got, c * want):
            return f"it is {c:.4g} times the right values: a constant factor is missing or extra"
    shifted = _shift_match(got, want, close)
    if shifted:
        return shifted
    if np.isclose(got.sum(), want.sum(), rtol=1e-6, atol=1e-6 * scale * got.size) and not close(got, want):
        wrong_places = (np.abs(got) > 1e-9 * scale) & ~nz
        if wrong_places.any():
            return "the right total lands on the wrong elements: an index (e.g. a switch) points at the wrong place"
    bad = ~np.isclose(got, want, atol=1e-6 * scale, rtol=1e-5)
    if 0 < bad.mean() < 0.5:
        return "only some elements are wrong: look at the edges (padding), overlapping windows and index arithmetic"
    return None


def compare(what, got, want, atol=1e-6, rtol=1e-5, extra_hint=None):
    """Fail with the worst element and a hint unless got matches want (relative to want's scale)."""
    got = as_array(got, what)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        note = ""
        if sorted(got.shape) == sorted(want.shape):
            note = " (the same sizes in another order: a missing transpose or reshape?)"
        raise Fail(f"{what} wrong: shape {tuple(got.shape)}, want {tuple(want.shape)}{note}")
    if not np.all(np.isfinite(got)):
        i = np.unravel_index(int(np.argmax(~np.isfinite(got))), got.shape)
        raise Fail(f"{what} wrong: {got[i]} at index {_index(i)} (want {want[i]:.6g}): NaN or Inf, "
                   f"an overflow or a division by zero?")
    scale = max(np.abs(want).max(initial=0.0), 1.0 if np.abs(want).max(initial=0.0) == 0 else 0.0)
    err = np.abs(got - want)
    bad = err > atol * scale + rtol * np.abs(want)
    if not bad.any():
        return
    i = np.unravel_index(int(np.argmax(err)), got.shape) if got.ndim else ()
    h = (extra_hint(got, want, bad) if extra_hint else None) or hint(got, want)
    raise Fail(f"{what} wrong at {int(bad.sum())} of {bad.size} elements; worst at index {_index(i)}: "
               f"got {got[i]:.6g}, want {want[i]:.6g}" + (f" — {h}" if h else ""))


def weighted_sum(y, w):
    return float((as_array(y, "output") * w).sum())


def central_differences(what, forward, arrays, i, analytic, weight, rng, max_points=40, eps=1e-6):
    """Check ``analytic`` (gradient of sum(forward(*arrays) * weight) w.r.t. arrays[i]) at up to
    ``max_points`` elements against float64 central differences of the student's own forward."""
    x = arrays[i]
    n = x.size
    points = np.arange(n) if n <= max_points else rng.choice(n, max_points, replace=False)
    numeric, got = [], []
    for j in points:
        xs = [a.copy() for a in arrays]
        flat = xs[i].reshape(-1)
        old = flat[j]
        flat[j] = old + eps
        up = weighted_sum(forward(*xs), weight)
        flat[j] = old - eps
        down = weighted_sum(forward(*xs), weight)
        numeric.append((up - down) / (2 * eps))
        got.append(analytic.reshape(-1)[j])
    numeric, got = np.array(numeric), np.array(got)
    scale = max(np.abs(numeric).max(initial=0.0), np.abs(got).max(initial=0.0), 1e-12)
    err = np.abs(numeric - got)
    bad = err > 1e-5 * scale + 1e-4 * np.abs(numeric)
    if bad.any():
        k = int(np.argmax(err))
        idx = np.unravel_index(int(points[k]), x.shape)
        raise Fail(f"{what} disagrees with central differences of your forward at {int(bad.sum())} of "
                   f"{len(points)} sampled elements; worst at index {_index(idx)}: backward gives {got[k]:.6g}, "
                   f"the numerical derivative {numeric[k]:.6g}")
