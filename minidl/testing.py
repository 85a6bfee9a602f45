"""``check_layer``: a verdict on a layer you wrote yourself (forward against a reference, backward
against numerical differences), with a report that says which input's gradient is wrong and where.

    >>> class MyReLU(md.Function):
    ...     def forward(self, x):
    ...         self.mask = x > 0
    ...         return x * self.mask
    ...     def backward(self, gy):
    ...         return gy * self.mask
    >>> check_layer(MyReLU, reference=F.relu, shapes=[(2, 3), (4, 1, 5, 5)])
    check_layer(MyReLU): PASS (2 cases)
    ...

How the gradient is checked: by ``minidl.gradcheck``'s engine, the same rule and the same report
table as ``md.gradcheck`` (float64 inputs, L = sum(out * w) with a fixed random w, central
differences one element at a time, |analytic - numeric| <= atol + rtol * |numeric| per element).

When an input fails, the report shows how many of its elements are wrong, the worst one (index,
analytic, numeric), the spatial positions that are wrong for images, and a hint when the error
has a recognisable shape: the sign flipped everywhere, the gradient transposed, a constant factor,
a gradient sent to the wrong elements (an index off by one), or only some elements wrong
(overlapping windows not summed, edges/padding).
"""
import inspect
import traceback

import numpy as np

from minidl import backend
from minidl.autograd import Function, Tensor, enable_grad
from minidl.gradcheck import (GradientReport, diagnose, float_outputs, numeric_gradient, random_weights,  # noqa: F401
                              report_table, weighted_sum, TOLERANCE_NOTE)
from minidl.nn.module import Module

DEFAULT_SHAPES = ((2, 3, 6, 6), (1, 2, 5, 7))


class CaseReport:
    """One input configuration: the forward comparison and one GradientReport per checked input."""

    def __init__(self, index, description):
        self.index, self.description = index, description
        self.forward_ok, self.forward_msg = True, "not compared (no reference)"
        self.gradients = []

    @property
    def ok(self):
        return self.forward_ok and all(g.ok for g in self.gradients)

    def lines(self):
        out = [f"case {self.index}: {self.description}",
               f"  forward: {'ok' if self.forward_ok else 'WRONG'}, {self.forward_msg}"]
        return out + ["  " + line for line in report_table(self.gradients)] if self.gradients else out


class CheckResult:
    """What ``check_layer`` found: ``passed`` (also ``bool(result)``), ``cases`` and the ``report`` text."""

    def __init__(self, name, cases, atol=1e-5, rtol=1e-3):
        self.name, self.cases, self.atol, self.rtol = name, cases, atol, rtol
        self.passed = all(c.ok for c in cases)

    def __bool__(self):
        return self.passed

    @property
    def failures(self):
        """(case index, what) for everything that failed: 'forward' or the name of an input."""
        out = []
        for c in self.cases:
            if not c.forward_ok:
                out.append((c.index, "forward"))
            out.extend((c.index, g.name) for g in c.gradients if not g.ok)
        return out

    @property
    def report(self):
        head = f"check_layer({self.name}): {'PASS' if self.passed else 'FAIL'} ({len(self.cases)} cases"
        if not self.passed:
            head += f", {len(self.failures)} problems"
        lines = [head + ")"]
        for c in self.cases:
            lines.extend(c.lines())
        if not self.passed:
            lines += [""] + [line.format(atol=self.atol, rtol=self.rtol) for line in TOLERANCE_NOTE]
        return "\n".join(lines)

    def __repr__(self):
        return f"CheckResult(passed={self.passed}, failures={self.failures})"

    def __str__(self):
        return self.report


class LayerCheckError(AssertionError):
    """Raised by ``check_layer(..., raise_on_failure=True)``; the message is the report."""


def check_layer(fn, reference=None, shapes=DEFAULT_SHAPES, inputs=None, *, check_grad=True, seed=0,
                eps=1e-6, atol=1e-5, rtol=1e-3, forward_atol=1e-6, forward_rtol=1e-5, name=None,
                verbose=True, raise_on_failure=False):
    """Check a layer written by hand: its forward against ``reference`` and its backward numerically.

    fn: the layer. A ``Function`` subclass (a fresh instance is made per call), a ``Module``
        (its parameters are checked too, temporarily in float64; parameters and buffers are
        restored afterwards), or any callable taking Tensors
        and returning a Tensor (or a tuple of Tensors).
    reference: optional callable of the same inputs (e.g. ``F.relu``); its output (Tensor or array)
        is compared with fn's. Without it only gradients are checked.
    shapes: the cases to run. Each entry is one shape (one input) or a tuple of shapes for several
        inputs; an entry may also hold arrays (used as they are — integer ones, like class labels,
        are passed through and not differentiated). Float inputs are drawn from N(0, 1) in float64.
    inputs: instead of shapes, a list of cases, each a tuple of arrays.
    check_grad: False to compare forwards only.
    Returns a CheckResult (truthy when everything passed) and prints its report when ``verbose``.
    """
    label = name or getattr(fn, "__name__", None) or type(fn).__name__
    call = _as_callable(fn)
    ref_call = _as_callable(reference) if reference is not None else None
    params = list(fn.named_parameters()) if isinstance(fn, Module) else []
    arg_names = _argument_names(fn)
    rng = np.random.default_rng(seed)
    cases = inputs if inputs is not None else [_make_case(s, rng) for s in _normalize_shapes(shapes)]

    old = [(p, p.data) for _, p in params]
    # buffers too: a training forward (BatchNorm's) updates them in place on every one of the many calls
    old_buffers = [(m, b, getattr(m, b).copy()) for _, m, b in fn.named_buffers()
                   if getattr(m, b, None) is not None] if isinstance(fn, Module) else []
    reports = []
    try:
        for _, p in params:  # float64 so that central differences are accurate
            p.data = p.data.astype(np.float64)
        for k, arrays in enumerate(cases, 1):
            arrays = tuple(_float64(a) for a in arrays)
            names = [arg_names[i] if i < len(arg_names) else f"input{i}" for i in range(len(arrays))]
            desc = ", ".join(f"{nm}{tuple(np.shape(a))}" for nm, a in zip(names, arrays))
            case = CaseReport(k, desc)
            reports.append(case)
            out = _check_forward(case, call, ref_call, arrays, forward_atol, forward_rtol)
            if out is None or not check_grad:
                continue
            for i, (nm, a) in enumerate(zip(names, arrays)):
                if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                    case.gradients.append(_check_gradient(call, arrays, i, None, nm, seed, eps, atol, rtol))
            for pname, p in params:
                case.gradients.append(_check_gradient(call, arrays, None, p, pname, seed, eps, atol, rtol))
    finally:
        for p, data in old:
            p.data = data
            p.grad = None
        for m, b, data in old_buffers:
            current = getattr(m, b)
            if getattr(current, "shape", None) == data.shape and current.dtype == data.dtype:
                current[...] = data  # in place: whoever holds the buffer array sees it restored
            else:
                object.__setattr__(m, b, data)

    result = CheckResult(label, reports, atol, rtol)
    if verbose:
        print(result.report)
    if raise_on_failure and not result.passed:
        raise LayerCheckError(result.report)
    return result


# ---- the two checks ------------------------------------------------------------------------------

def _check_forward(case, call, ref_call, arrays, atol, rtol):
    """Run fn (and the reference); fill in case.forward_*; return fn's output arrays or None on error."""
    try:
        ys = _out_arrays(call(*[Tensor(a) if _is_float(a) else a for a in arrays]))
    except Exception as e:  # a student's forward may raise anything; report it instead
        case.forward_ok, case.forward_msg = False, "forward raised " + _short_exc(e)
        return None
    if ref_call is None:
        case.forward_msg = f"ran, output {', '.join(str(y.shape) for y in ys)} (no reference to compare with)"
        return ys
    try:
        rs = _out_arrays(ref_call(*[Tensor(a) if _is_float(a) else a for a in arrays]))
    except Exception as e:
        case.forward_ok, case.forward_msg = False, "the reference raised " + _short_exc(e)
        return None
    if len(rs) != len(ys):
        case.forward_ok, case.forward_msg = False, f"{len(ys)} outputs, the reference gives {len(rs)}"
        return None
    msgs = []
    for j, (y, r) in enumerate(zip(ys, rs)):
        tag = f"output {j}: " if len(ys) > 1 else ""
        if y.shape != r.shape:
            case.forward_ok = False
            msgs.append(f"{tag}shape {y.shape}, the reference gives {r.shape}")
            continue
        diff = np.abs(y.astype(np.float64) - r)
        bad = ~(diff <= atol + rtol * np.abs(r))  # NaN counts as bad
        if bad.any():
            case.forward_ok = False
            worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
            msgs.append(f"{tag}{int(bad.sum())} of {bad.size} values differ; worst at {tuple(int(i) for i in worst)}: "
                        f"yours {y[worst]:.4g}, reference {r[worst]:.4g}")
        else:
            msgs.append(f"{tag}matches the reference (max abs diff {diff.max(initial=0):.1e})")
    case.forward_msg = "; ".join(msgs)
    return ys if case.forward_ok else None


def _check_gradient(call, arrays, i, param, name, seed, eps, atol, rtol):
    """Analytic vs numeric gradient of L = sum(out * w) with respect to input i (or a parameter)."""
    xs = [Tensor(a, requires_grad=(j == i)) if _is_float(a) else a for j, a in enumerate(arrays)]
    target = xs[i] if param is None else param
    shape = target.shape
    try:
        with enable_grad():
            ys = _outputs(call(*xs))
            weights = random_weights(ys, seed)
            target.grad = None
            for y, w in zip(ys, weights):
                if y.requires_grad:
                    y.backward(w.astype(y.dtype))
        g = target.grad
        analytic = np.zeros(shape) if g is None else np.asarray(backend.as_numpy(g), dtype=np.float64)
        if analytic.shape != tuple(shape):
            return GradientReport(name, shape, False, error=f"backward gave a gradient of shape {analytic.shape}")
    except Exception as e:
        return GradientReport(name, shape, False, error="backward raised " + _short_exc(e))
    finally:
        target.grad = None

    def loss():
        with enable_grad():  # some layers behave differently without a graph; keep it the same
            return weighted_sum(_outputs(call(*xs)), weights)
    try:
        numeric = numeric_gradient(loss, target.data, eps)  # target.data: a fresh contiguous float64 array
    except Exception as e:
        return GradientReport(name, shape, False, error="forward raised during numeric differences: " + _short_exc(e))
    return GradientReport(name, shape, analytic=analytic, numeric=numeric, atol=atol, rtol=rtol)


# ---- helpers -------------------------------------------------------------------------------------

def _as_callable(fn):
    if inspect.isclass(fn) and issubclass(fn, Function):
        return lambda *xs: fn()(*xs)
    if not callable(fn):
        raise TypeError(f"check_layer: expected a Function subclass, a Module or a callable, got {type(fn).__name__}")
    return fn


def _argument_names(fn):
    target = fn.forward if (inspect.isclass(fn) and issubclass(fn, Function)) or isinstance(fn, Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _normalize_shapes(shapes):
    if isinstance(shapes, tuple) and shapes and all(isinstance(s, (int, np.integer)) for s in shapes):
        return [(shapes,)]  # one bare shape
    out = []
    for s in shapes:
        if isinstance(s, np.ndarray) or (isinstance(s, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in s)):
            out.append((s,))
        else:
            out.append(tuple(s))
    return out


def _make_case(entry, rng):
    return tuple(a if isinstance(a, np.ndarray) else rng.standard_normal(tuple(a)) for a in entry)


def _float64(a):
    a = backend.as_numpy(getattr(a, "data", a))
    a = np.ascontiguousarray(a)  # the numeric differences perturb it through a flat view
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _outputs(y):
    out = float_outputs(y)
    if not out:
        raise TypeError(f"the layer returned {type(y).__name__}, expected a Tensor (did you return a raw array "
                        "from outside a Function?)")
    return out


def _out_arrays(y):
    ys = y if isinstance(y, (tuple, list)) else (y,)
    return [np.asarray(backend.as_numpy(getattr(t, "data", t)), dtype=np.float64) for t in ys]


def _short_exc(e):
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" (at {frame.name}, line {frame.lineno})" if frame else ""
    return f"{type(e).__name__}: {e}{where}"
