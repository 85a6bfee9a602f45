"""Pooling: max (AlexNet's overlapping 3x3 stride-2), average, and adaptive average (NiN, ResNet heads).

All take x (N, C, H, W). Output size per PyTorch: out = floor((in + 2*pad - k) / stride) + 1, or
ceil(...) + 1 with ``ceil_mode`` where the last window must still start inside the input or the left
padding. The loops live in minidl.kernels (Numba on the CPU, CuPy on the GPU), chosen by the array.
"""
import numpy as np

from minidl import backend, kernels
from minidl.autograd import Function


def _pair(op, name, v):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(a, (int, np.integer)) for a in v):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v}")
    return int(v[0]), int(v[1])


def pool_output_size(size, kernel, stride, pad, ceil_mode):
    """Output length of one axis (PyTorch's rule, see reference/layers.md)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # last window would start in the right padding
        out -= 1
    return out


def _pool_geometry(op, x, kernel_size, stride, padding, ceil_mode):
    """Validate the arguments; return (kh, kw, sh, sw, ph, pw, oh, ow)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    kh, kw = _pair(op, "kernel_size", kernel_size)
    sh, sw = _pair(op, "stride", kernel_size if stride is None else stride)
    ph, pw = _pair(op, "padding", padding)
    h, w = x.shape[2:]
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel_size must be >= 1, got {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {(ph, pw)}")
    if 2 * ph > kh or 2 * pw > kw:  # else a window could hold nothing but padding
        raise ValueError(f"{op}: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input {(h, w)}, padding {(ph, pw)})")
    oh = pool_output_size(h, kh, sh, ph, ceil_mode)
    ow = pool_output_size(w, kw, sw, pw, ceil_mode)
    return kh, kw, sh, sw, ph, pw, oh, ow


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x over window (i, j); backward routes gy to the argmax ("switch")."""

    def __init__(self, geometry):
        self.geometry = geometry  # (kh, kw, sh, sw, ph, pw, oh, ow)

    def forward(self, x):
        self.x_shape = x.shape
        if x.size == 0:  # an empty batch (or no channels): the kernels reshape by planes and cannot
            return backend.xp_of(x).zeros(x.shape[:2] + self.geometry[6:], dtype=x.dtype)
        y, self.argmax = kernels.of(x).max_pool_forward(x, *self.geometry)
        return y

    def backward(self, gy):
        if gy.size == 0:
            return backend.xp_of(gy).zeros(self.x_shape, dtype=gy.dtype)
        return kernels.of(gy).max_pool_backward(gy, self.argmax, self.x_shape)


class AvgPool2d(Function):
    """y = window sum / window area, the area counting padding (PyTorch's count_include_pad=True)."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x):
        self.x_shape = x.shape
        return kernels.of(x).avg_pool_forward(x, *self.geometry)

    def backward(self, gy):
        return kernels.of(gy).avg_pool_backward(gy, self.x_shape, *self.geometry[:6])


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """x (N, C, H, W) -> (N, C, oh, ow). stride defaults to kernel_size; padding never wins the max."""
    geometry = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, ceil_mode)
    return MaxPool2d(geometry)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """x (N, C, H, W) -> (N, C, oh, ow). Padded zeros count in the divisor, as PyTorch's default."""
    geometry = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, ceil_mode)
    return AvgPool2d(geometry)(x)


def _adaptive_bounds(size, out):
    """PyTorch's windows: output i averages rows floor(i*size/out) ... ceil((i+1)*size/out) - 1."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


class AdaptiveAvgPool2d(Function):
    """Average over windows chosen so the output is (oh, ow) for any input size."""

    def __init__(self, oh, ow):
        self.oh, self.ow = oh, ow

    def forward(self, x):
        n, c, h, w = self.x_shape = x.shape
        oh, ow = self.oh, self.ow
        if h % oh == 0 and w % ow == 0:  # equal, disjoint windows: one reshape and a mean
            return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5))
        xp = backend.xp_of(x)
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        for i, (h0, h1) in enumerate(_adaptive_bounds(h, oh)):
            for j, (w0, w1) in enumerate(_adaptive_bounds(w, ow)):
                y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return y

    def backward(self, gy):
        n, c, h, w = self.x_shape
        oh, ow = self.oh, self.ow
        xp = backend.xp_of(gy)
        if h % oh == 0 and w % ow == 0:
            kh, kw = h // oh, w // ow
            g = gy[:, :, :, None, :, None] / (kh * kw)
            return xp.ascontiguousarray(xp.broadcast_to(g, (n, c, oh, kh, ow, kw))).reshape(self.x_shape)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        for i, (h0, h1) in enumerate(_adaptive_bounds(h, oh)):
            for j, (w0, w1) in enumerate(_adaptive_bounds(w, ow)):
                gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
        return gx


def adaptive_avg_pool2d(x, output_size):
    """x (N, C, H, W) -> (N, C, oh, ow); output_size an int, a pair, or a pair with None (keep that size)."""
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2:]
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    output_size = tuple(output_size)
    if len(output_size) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size}")
    oh, ow = (size if o is None else o for o, size in zip(output_size, (h, w)))
    if not all(isinstance(o, (int, np.integer)) and o >= 1 for o in (oh, ow)):
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive ints, got {output_size}")
    if h < 1 or w < 1:
        raise ValueError(f"adaptive_avg_pool2d: input has an empty plane {(h, w)}")
    return AdaptiveAvgPool2d(int(oh), int(ow))(x)


__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "pool_output_size"]
