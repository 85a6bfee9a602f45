"""Numerical gradient checking: float64 central differences against the analytic backward.

Public, so tests, lessons and students use the same checker:

    >>> x = md.tensor(np.random.randn(3, 4), requires_grad=True, dtype="float64")
    >>> md.gradcheck(lambda x: (x * x).sum(), x)
    True
"""
import numpy as np

from minidl import backend
from minidl.autograd import Tensor, enable_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one; the message is a table."""


def _as_float64_input(x):
    if isinstance(x, Tensor):
        if x.dtype.kind == "f" and x.dtype != np.float64:
            return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
        return x
    arr = x if backend._is_cupy_array(x) else np.asarray(x)  # raw cupy arrays stay on the GPU
    if arr.dtype.kind == "f":
        return Tensor(arr.astype(np.float64), requires_grad=True)
    return x  # integer targets, flags etc. pass through unchanged


def _outputs(y):
    ys = y if isinstance(y, (tuple, list)) else (y,)
    return [t for t in ys if isinstance(t, Tensor) and t.dtype.kind == "f"]


def _scalar(ys, weights):
    """The scalar L = sum_i <y_i, w_i> whose gradient both sides compute (random w catches transposes)."""
    total = 0.0
    for y, w in zip(ys, weights):
        total = total + float((y.data * w).sum())
    return total


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
        if not xs[i].data.flags.c_contiguous:  # perturbation below goes through a flat view
            xs[i].data = backend.xp_of(xs[i].data).ascontiguousarray(xs[i].data)
    with enable_grad():
        ys = _outputs(fn(*xs))
    if not ys:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    # A stream of its own: with default_rng(seed), test data drawn from default_rng(0) would equal the
    # weights, and L = <a @ b, a> hides a missing transpose (a^T a is symmetric).
    rng = np.random.default_rng([seed, 0x67726164])
    weights = [backend.xp_of(y.data).asarray(rng.standard_normal(y.shape)) for y in ys]

    # Analytic gradient of L = sum <y, w>: backward with grad=w for each output, summed.
    for y, w in zip(ys, weights):
        if y.requires_grad:
            y.backward(w.astype(y.dtype), retain_graph=True)
    analytic = {i: (backend.as_numpy(xs[i].grad) if xs[i].grad is not None
                    else np.zeros(xs[i].shape)) for i in checked}

    rows, failed = [], 0
    for i in checked:
        data = xs[i].data
        numeric = np.zeros(data.shape)
        flat = data.reshape(-1)  # a view: perturbing it perturbs the input in place
        for j in range(flat.size):
            old = flat[j].item()
            flat[j] = old + eps
            up = _scalar(_outputs(fn(*xs)), weights)
            flat[j] = old - eps
            down = _scalar(_outputs(fn(*xs)), weights)
            flat[j] = old
            numeric.reshape(-1)[j] = (up - down) / (2 * eps)
        a = analytic[i]
        abs_err = np.abs(a - numeric)
        rel_err = abs_err / np.maximum(np.abs(numeric), np.abs(a)).clip(min=1e-12)
        bad = abs_err > atol + rtol * np.abs(numeric)
        worst = np.unravel_index(int(np.argmax(abs_err)), a.shape) if a.size else ()
        ok = not bad.any()
        failed += not ok
        rows.append((i, xs[i].shape, abs_err.max(initial=0.0), rel_err.max(initial=0.0), worst,
                     a[worst] if a.size else 0.0, numeric[worst] if a.size else 0.0, int(bad.sum()), a.size, ok))

    if failed and raise_exception:
        raise GradcheckError(_report(name or getattr(fn, "__name__", "fn"), rows, failed, atol, rtol))
    return failed == 0


def _report(name, rows, failed, atol, rtol):
    lines = [f"gradcheck failed for {name}: {failed} of {len(rows)} checked inputs have a wrong gradient",
             "",
             f"{'input':<6} {'shape':<16} {'max abs err':>11} {'max rel err':>11}  {'worst index':<14} "
             f"{'analytic':>11} {'numeric':>11}  {'bad elements':<13} verdict"]
    for i, shape, ae, re, worst, a, n, nbad, size, ok in rows:
        lines.append(f"{i:<6} {str(tuple(shape)):<16} {ae:>11.2e} {re:>11.2e}  {str(tuple(int(w) for w in worst)):<14} "
                     f"{a:>11.4g} {n:>11.4g}  {f'{nbad}/{size}':<13} {'ok' if ok else 'WRONG'}")
    lines += ["",
              f"An element passes when |analytic - numeric| <= atol + rtol * |numeric| (atol={atol:g}, rtol={rtol:g}).",
              "In float64 a correct backward gives relative errors around 1e-7 or smaller; errors near 1 mean",
              "the backward is wrong there (a flipped sign, a missing transpose, a gradient not accumulated),",
              "and a wrong count of elements that is small points at the edges (padding, off-by-one indices)."]
    return "\n".join(lines)
