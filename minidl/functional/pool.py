"""Pooling: max (AlexNet's overlapping 3x3 stride-2), average, and adaptive average (NiN, ResNet heads).

All take x (N, C, H, W). Output size per PyTorch: out = floor((in + 2*pad - k) / stride) + 1, or
ceil(...) + 1 with ``ceil_mode`` where the last window must still start inside the input or the left
padding. The loops live in minidl/kernels/pool.py (reference, Numba, CUDA side by side), chosen by the array.
"""
import numpy as np

from minidl import backend, kernels
from minidl.autograd import Function
from minidl.kernels._geometry import pool_output_size, pool_window


def _pool_geometry(op, x, kernel_size, stride, padding, ceil_mode):
    """Validate the arguments; return the pooling's Window (see minidl.kernels._geometry)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    return pool_window(op, x.shape[2], x.shape[3], kernel_size, stride, padding, ceil_mode)


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x over window (i, j); backward routes gy to the argmax ("switch")."""

    def __init__(self, window):
        self.window = window

    def forward(self, x):
        if x.size == 0:  # an empty batch (or no channels): the kernels reshape by planes and cannot
            self.switches = None
            return backend.xp_of(x).zeros(x.shape[:2] + (self.window.oh, self.window.ow), dtype=x.dtype)
        y, self.switches = kernels.of(x).max_pool_forward(x, self.window)
        return y

    def backward(self, gy):
        if gy.size == 0:
            return backend.xp_of(gy).zeros(gy.shape[:2] + (self.window.h, self.window.w), dtype=gy.dtype)
        return kernels.of(gy).max_pool_backward(gy, self.switches, self.window)


class AvgPool2d(Function):
    """y = window sum / window area, the area counting padding (PyTorch's count_include_pad=True)."""

    def __init__(self, window):
        self.window = window

    def forward(self, x):
        y, self.saved = kernels.of(x).avg_pool_forward(x, self.window)
        return y

    def backward(self, gy):
        return kernels.of(gy).avg_pool_backward(gy, self.saved, self.window)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """x (N, C, H, W) -> (N, C, oh, ow). stride defaults to kernel_size; padding never wins the max."""
    geometry = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, ceil_mode)
    return MaxPool2d(geometry)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """x (N, C, H, W) -> (N, C, oh, ow). Padded zeros count in the divisor, as PyTorch's default."""
    geometry = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, ceil_mode)
    return AvgPool2d(geometry)(x)


class AdaptiveAvgPool2d(Function):
    """Average over windows chosen so the output is (oh, ow) for any input size (PyTorch's bins)."""

    def __init__(self, oh, ow):
        self.out_size = (oh, ow)

    def forward(self, x):
        self.x_shape = x.shape
        y, self.saved = kernels.of(x).adaptive_avg_pool_forward(x, self.out_size)
        return y

    def backward(self, gy):
        return kernels.of(gy).adaptive_avg_pool_backward(gy, self.saved, self.x_shape)


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
