"""Numerical gradient checking: float64 central differences against the analytic backward.

Public, so tests, lessons and students use the same checker:

    >>> x = md.tensor(np.random.randn(3, 4), requires_grad=True, dtype="float64")
    >>> md.gradcheck(lambda x: (x * x).sum(), x)
    True

This module is the one numerical engine: ``numeric_gradient`` (the central differences),
``GradientReport`` (one input's analytic-against-numeric comparison, with a diagnosis) and
``report_table`` (the one report format). ``minidl.testing.check_layer`` builds on them.

The rule: every input is float64; the scalar L = sum_i <y_i, w_i> over the outputs y_i, with fixed
random w_i (all ones would hide a missing transpose), is differentiated by backward (analytic) and
by (L(x + eps) - L(x - eps)) / 2 eps, one element at a time (numeric). An element passes when
|analytic - numeric| <= atol + rtol * |numeric|.
"""
import numpy as np

from minidl import backend
from minidl.autograd import Tensor, enable_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one; the message is a table."""


# ---- the engine ----------------------------------------------------------------------------------
def random_weights(ys, seed):
    """One fixed random array w_i per output (float64, on the output's device).

    A stream of its own: with default_rng(seed), test data drawn from default_rng(0) would equal the
    weights, and L = <a @ b, a> hides a missing transpose (a^T a is symmetric)."""
    rng = np.random.default_rng([seed, 0x67726164])
    return [backend.xp_of(y.data).asarray(rng.standard_normal(y.shape)) for y in ys]


def weighted_sum(ys, weights):
    """L = sum_i <y_i, w_i> as a Python float."""
    return sum(float((y.data * w).sum()) for y, w in zip(ys, weights))


def numeric_gradient(loss, x, eps=1e-6):
    """dL/dx by central differences: ``loss()`` (a float) evaluated with each element of the array
    ``x`` moved by +-eps, in place (x must be C-contiguous), then restored. Returns a float64 host array."""
    if not x.flags.c_contiguous:
        raise ValueError("numeric_gradient: the input must be C-contiguous (it is perturbed through a flat view)")
    numeric = np.zeros(x.shape)
    flat = x.reshape(-1)
    for j in range(flat.size):
        old = flat[j].item()
        flat[j] = old + eps
        up = loss()
        flat[j] = old - eps
        down = loss()
        flat[j] = old
        numeric.reshape(-1)[j] = (up - down) / (2 * eps)
    return numeric


def float_outputs(y):
    """The floating-point Tensors among what a function returned (one Tensor or a tuple)."""
    ys = y if isinstance(y, (tuple, list)) else (y,)
    return [t for t in ys if isinstance(t, Tensor) and t.dtype.kind == "f"]


class GradientReport:
    """The analytic against the numeric gradient of one input (or parameter): ``ok``, and a table row."""

    def __init__(self, name, shape, ok=None, analytic=None, numeric=None, error=None, atol=1e-5, rtol=1e-3):
        self.name, self.shape, self.error = str(name), tuple(shape), error
        self.analytic, self.numeric, self.atol, self.rtol = analytic, numeric, atol, rtol
        self.ok = (error is None and not self.bad.any()) if ok is None else ok

    @property
    def bad(self):
        """Elements out of tolerance (a NaN counts as out)."""
        return ~(np.abs(self.analytic - self.numeric) <= self.atol + self.rtol * np.abs(self.numeric))

    def row(self, width=6):
        """input, shape, max abs err, max rel err, worst index, analytic and numeric there, bad elements, verdict."""
        head = f"{self.name:<{width}} {str(self.shape):<16}"
        if self.error is not None:
            return f"{head} ERROR  {self.error}"
        a, n = self.analytic, self.numeric
        err = np.abs(a - n)
        rel = err / np.maximum(np.abs(n), np.abs(a)).clip(min=1e-12)
        worst = np.unravel_index(int(np.argmax(np.where(np.isnan(err), np.inf, err))), a.shape) if a.size else ()
        aw, nw = (a[worst], n[worst]) if a.size else (0.0, 0.0)
        return (f"{head} {err.max(initial=0.0):>11.2e} {rel.max(initial=0.0):>11.2e}  "
                f"{str(tuple(int(w) for w in worst)):<14} {aw:>11.4g} {nw:>11.4g}  "
                f"{f'{int(self.bad.sum())}/{a.size}':<13} {'ok' if self.ok else 'WRONG'}")

    def details(self):
        """For a wrong gradient: where the wrong elements are (images) and a guess at why."""
        if self.ok or self.error is not None:
            return []
        hint = diagnose(self.analytic, self.numeric, self.bad)
        out = ["  " + line for line in _where(self.bad)] + ([f"  hint: {hint}"] if hint else [])
        return [f"input {self.name}:"] + out if out else []


def report_table(reports):
    """The header and one row per GradientReport, then the details of the wrong ones."""
    width = max([6] + [len(r.name) for r in reports])
    lines = [f"{'input':<{width}} {'shape':<16} {'max abs err':>11} {'max rel err':>11}  {'worst index':<14} "
             f"{'analytic':>11} {'numeric':>11}  {'bad elements':<13} verdict"]
    lines += [r.row(width) for r in reports]
    return lines + [d for r in reports for d in r.details()]


TOLERANCE_NOTE = [
    "An element passes when |analytic - numeric| <= atol + rtol * |numeric| (atol={atol:g}, rtol={rtol:g}).",
    "In float64 a correct backward gives relative errors around 1e-7 or smaller; errors near 1 mean",
    "the backward is wrong there (a flipped sign, a missing transpose, a gradient not accumulated),",
    "and a wrong count of elements that is small points at the edges (padding, off-by-one indices)."]


# ---- md.gradcheck --------------------------------------------------------------------------------
def _as_float64_input(x):
    if isinstance(x, Tensor):
        if x.dtype.kind == "f" and x.dtype != np.float64:
            return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
        return x
    arr = x if backend._is_cupy_array(x) else np.asarray(x)  # raw cupy arrays stay on the GPU
    if arr.dtype.kind == "f":
        return Tensor(arr.astype(np.float64), requires_grad=True)
    return x  # integer targets, flags etc. pass through unchanged


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True, name=None):
    """Check ``fn``'s backward against central differences for every input that requires grad.

    fn: callable taking ``inputs`` and returning a Tensor (or a tuple of Tensors).
    inputs: Tensors (float ones are checked in float64), arrays (made float64 and checked), or
        anything else (passed through). Returns True, or raises GradcheckError with a table:
        input, shape, max abs error, max rel error, worst index, analytic and numeric values there.
    """
    xs = [_as_float64_input(x) for x in inputs]
    checked = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with requires_grad=True")
    for i in checked:
        xs[i].grad = None
        if not xs[i].data.flags.c_contiguous:  # the numeric differences perturb it through a flat view
            xs[i].data = backend.xp_of(xs[i].data).ascontiguousarray(xs[i].data)
    with enable_grad():
        ys = float_outputs(fn(*xs))
    if not ys:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    weights = random_weights(ys, seed)
    for y, w in zip(ys, weights):  # the analytic gradient of L: backward with grad=w from each output
        if y.requires_grad:
            y.backward(w.astype(y.dtype), retain_graph=True)

    def loss():
        with enable_grad():
            return weighted_sum(float_outputs(fn(*xs)), weights)

    reports = []
    for i in checked:
        analytic = backend.as_numpy(xs[i].grad) if xs[i].grad is not None else np.zeros(xs[i].shape)
        reports.append(GradientReport(i, xs[i].shape, analytic=analytic, numeric=numeric_gradient(loss, xs[i].data, eps),
                                      atol=atol, rtol=rtol))
    failed = sum(not r.ok for r in reports)
    if failed and raise_exception:
        raise GradcheckError("\n".join(
            [f"gradcheck failed for {name or getattr(fn, '__name__', 'fn')}: {failed} of {len(reports)} checked "
             "inputs have a wrong gradient", ""] + report_table(reports) + [""]
            + [line.format(atol=atol, rtol=rtol) for line in TOLERANCE_NOTE]))
    return failed == 0


# ---- diagnosis -----------------------------------------------------------------------------------
def diagnose(a, n, bad=None):
    """A one-line guess at what is wrong, from the shapes of the analytic (a) and numeric (n) gradients."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(n).max(initial=0), np.abs(a).max(initial=0), 1e-12)

    def close(p, q):
        return p.shape == q.shape and np.allclose(p, q, atol=1e-4 * scale, rtol=1e-3)

    if not np.all(np.isfinite(a)):
        return "the analytic gradient has NaN or Inf values"
    if np.abs(n).max(initial=0) < 1e-9:
        return "the output does not depend on this input, but backward returns a non-zero gradient"
    if np.abs(a).max(initial=0) < 1e-12:
        return "backward returns zeros (or None) for this input: the gradient is not passed back"
    if close(a, -n):
        return "the analytic gradient is the numeric one with the sign flipped: a wrong sign in backward"
    if a.ndim >= 2 and close(a, np.swapaxes(n, -1, -2)):
        return "the analytic gradient is the numeric one transposed (last two axes): a missing or extra transpose"
    if a.ndim == 2 and a.shape[0] == a.shape[1] and close(a, n.T):
        return "the analytic gradient is the numeric one transposed: a missing or extra transpose"
    nz = np.abs(n) > 1e-9
    c = float((a[nz] * n[nz]).sum() / (n[nz] ** 2).sum())
    if abs(c - 1) > 1e-3 and close(a, c * n):
        return f"the analytic gradient is {c:.4g} times the numeric one: a missing or extra constant factor"
    az = np.abs(a) > 1e-9 * scale
    if az.sum() > 0 and (az & ~nz).sum() > 0 and (nz & ~az).sum() > 0:
        return ("the gradient goes to elements the output does not depend on, and misses ones it does: an index "
                "off by one (e.g. a max-pool switch pointing at the wrong element)?")
    if bad is not None and 0 < bad.mean() < 1:
        if bad.ndim == 4 and np.abs(a[bad]).sum() < np.abs(n[bad]).sum():
            return ("only some elements are wrong and the analytic gradient is too small there: contributions "
                    "from overlapping windows not summed (col2im must use +=, not =)?")
        return "only some elements are wrong: look at the edges (padding), overlapping windows and index arithmetic"
    return None


def _where(bad):
    """For an image-shaped input, which spatial positions hold wrong elements (a small map, or row/column lists)."""
    if bad.ndim != 4 or bad.all():
        return []
    H, W = bad.shape[2:]
    spatial = bad.any(axis=(0, 1))
    if H <= 16 and W <= 16:
        return ["wrong positions (h, w) over all images and channels, x = wrong:"] + \
               ["  " + " ".join("x" if v else "." for v in row) for row in spatial]
    rows, cols = np.flatnonzero(spatial.any(axis=1)), np.flatnonzero(spatial.any(axis=0))

    def fmt(idx):
        return "[" + ", ".join(str(int(i)) for i in idx[:12]) + (", ..." if len(idx) > 12 else "") + "]"
    return [f"wrong at rows {fmt(rows)} and columns {fmt(cols)} (of {H}x{W})"]
