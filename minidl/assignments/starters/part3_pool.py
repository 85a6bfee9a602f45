"""Part 3: max-pooling with switches (AlexNet's overlapping 3x3 stride 2, ceil mode) and average pooling.

x (N, C, H, W) -> (N, C, oh, ow), oh = pool_output_size(H, ...) (PyTorch's rule, given below).
Output (i, j) pools rows i*stride - padding ... i*stride - padding + kernel_size - 1, likewise columns,
clipped to the input: padding never wins a max.
Check: ``minidl assignments check DIR max_pool avg_pool``.
"""
import numpy as np

from minidl import Function


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Output length of one axis: floor (or ceil, with ceil_mode) of (size + 2*padding - kernel) / stride,
    plus 1; in ceil mode the last window must start inside the input or the left padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x[n, c] over window (i, j). Forward records the "switch" of each output, the
    flat index h*W + w of its max in the input plane; backward adds gy[n, c, i, j] to gx at that switch
    (a pixel that is the max of two overlapping windows gets both gradients)."""

    def __init__(self, kernel_size=3, stride=2, padding=0, ceil_mode=False):
        self.k, self.s, self.p, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        raise NotImplementedError("max_pool: for every output (i, j) take the max of its clipped window and "
                                  "record the switch (h*W + w of the max)")

    def backward(self, gy):
        raise NotImplementedError("max_pool: add every gy[n, c, i, j] to gx at its switch (np.add.at sums repeats)")


class AvgPool2d(Function):
    """y[n, c, i, j] = sum of x over window (i, j) / divisor. The divisor counts padding (PyTorch's
    count_include_pad): with start = i*stride - padding and end = min(start + kernel_size, H + padding),
    the rows divisor is end - start (a ceil-mode window running past the padding counts only up to it).
    Backward: every input pixel of window (i, j) gets gy[n, c, i, j] / divisor; overlaps sum."""

    def __init__(self, kernel_size=3, stride=2, padding=0, ceil_mode=False):
        self.k, self.s, self.p, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        raise NotImplementedError("avg_pool: the sum over each clipped window divided by its divisor")

    def backward(self, gy):
        raise NotImplementedError("avg_pool: spread gy / divisor over each window (+=)")
