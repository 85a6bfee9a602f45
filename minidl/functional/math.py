"""Elementwise math, reductions and matmul: one Function per op, forward and backward side by side."""
import numpy as np

from minidl import backend
from minidl.autograd import Function


def sum_to(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the inverse of broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None


class _Binary(Function):
    def forward(self, a, b):
        _broadcast_shape(self.name.lower(), a, b)
        self.shapes = (a.shape, b.shape)
        return self.compute(a, b)


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        sa, sb = self.shapes
        return sum_to(gy, sa), sum_to(gy, sb)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        sa, sb = self.shapes
        return sum_to(gy, sa), sum_to(-gy, sb)


class Mul(_Binary):
    def compute(self, a, b):
        need_a, need_b = self.needs_input_grad  # each gradient reads the other operand only
        self.a, self.b = (a if need_b else None), (b if need_a else None)
        return a * b

    def backward(self, gy):
        ga = sum_to(gy * self.b, self.shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.a, self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Div(_Binary):
    def compute(self, a, b):
        self.a, self.b = (a if self.needs_input_grad[1] else None), b  # a only for b's gradient
        return a / b

    def backward(self, gy):
        ga = sum_to(gy / self.b, self.shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * self.a / (self.b * self.b), self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Pow(_Binary):
    """a ** b for a tensor or constant exponent b."""

    def compute(self, a, b):
        y = a ** b
        self.a, self.b, self.y = a, b, (y if self.needs_input_grad[1] else None)  # y only for b's gradient
        return y

    def backward(self, gy):
        xp = backend.xp_of(gy)
        a, b = self.a, self.b
        # b * a**(b-1), written so that b = 0 gives 0 at a = 0 too (not 0 * inf = NaN)
        ga = sum_to(gy * b * a ** xp.where(b == 0, 1, b - 1), self.shapes[0]) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.y * xp.log(a), self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return backend.xp_of(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class MatMul(Function):
    """a @ b with NumPy's rules: (…, n, k) @ (…, k, m), batch dims broadcast; 1-D operands promoted."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({ka} != {kb})")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast "
                             f"together ({a.shape[:-2]} vs {b.shape[:-2]})") from None
        self.a, self.b = a, b
        return backend.xp_of(a).matmul(a, b)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.b.ndim == 1:  # b first: for 1-D @ 1-D, gy () -> (1,) -> (1, 1)
            gy = xp.expand_dims(gy, -1)
        if self.a.ndim == 1:
            gy = xp.expand_dims(gy, -2)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(xp.matmul(gy, xp.swapaxes(b, -1, -2)), a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            gb = sum_to(xp.matmul(xp.swapaxes(a, -1, -2), gy), b.shape).reshape(self.b.shape)
        return ga, gb


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape = x.shape
        self.axes = _normalize_axis(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        if not self.keepdims:
            gy = xp.expand_dims(gy, self.axes) if self.axes else gy
        return xp.broadcast_to(gy, self.shape).copy()


class Mean(Sum):
    def forward(self, x):
        y = super().forward(x)
        self.count = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        y = y / self.count
        return y.astype(x.dtype, copy=False) if x.dtype.kind == "f" else y  # ints: a float mean, as NumPy

    def backward(self, gy):
        return super().backward(gy / self.count)


class Max(Function):
    """Maximum over ``axis``; the gradient goes to the argmax (split evenly between ties)."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axis(self.axis, x.ndim)
        self.x = x
        self.y = x.max(axis=self.axes, keepdims=True)
        return self.y if self.keepdims else self.y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gy):
        mask = (self.x == self.y)
        gy = gy.reshape(self.y.shape)
        return (mask * (gy / mask.sum(axis=self.axes, keepdims=True))).astype(self.x.dtype, copy=False)


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.source = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return backend.to_device(gy, self.source)


class AsType(Function):
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.source)


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def pow(a, b):
    return Pow()(a, b)


def neg(x):
    return Neg()(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def sqrt(x):
    return Sqrt()(x)


def matmul(a, b):
    return MatMul()(a, b)


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def _check_reduction(op, x, axis):
    """A reduction over no elements has no value (max) or none worth having (mean: NaN): refuse it, naming ``op``."""
    shape = tuple(x.shape)
    axes = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, (int, np.integer)) else tuple(axis))
    for a in axes:
        if not -len(shape) <= a < len(shape):
            raise ValueError(f"{op}: axis {a} is out of range for an input of shape {shape}")
    if any(shape[a] == 0 for a in axes):
        raise ValueError(f"{op}: cannot reduce over an empty axis (input shape {shape}, axis {axis})")


def mean(x, axis=None, keepdims=False):
    _check_reduction("mean", x, axis)
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):
    _check_reduction("max", x, axis)
    return Max(axis, keepdims)(x)


def to_device(x, device):
    return ToDevice(device)(x)


def astype(x, dtype):
    return AsType(dtype)(x)
