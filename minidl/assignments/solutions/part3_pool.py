"""Part 3: max-pooling with switches (AlexNet's overlapping 3x3 stride 2, ceil mode) and average pooling.

x (N, C, H, W) -> (N, C, oh, ow), oh = pool_output_size(H, ...) (PyTorch's rule, given below).
Output (i, j) pools rows i*stride - padding ... i*stride - padding + kernel_size - 1, likewise columns,
clipped to the input: padding never wins a max.
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
        n, c, h, w = x.shape
        k, s, p = self.k, self.s, self.p
        oh, ow = pool_output_size(h, k, s, p, self.ceil_mode), pool_output_size(w, k, s, p, self.ceil_mode)
        y = np.empty((n, c, oh, ow), dtype=x.dtype)
        self.switch = np.empty((n, c, oh, ow), dtype=np.int64)
        for i in range(oh):
            h0, h1 = max(i * s - p, 0), min(i * s - p + k, h)
            for j in range(ow):
                w0, w1 = max(j * s - p, 0), min(j * s - p + k, w)
                window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                a = window.argmax(axis=2)
                y[:, :, i, j] = window.max(axis=2)
                self.switch[:, :, i, j] = (h0 + a // (w1 - w0)) * w + w0 + a % (w1 - w0)
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        n, c, h, w = self.x_shape
        gx = np.zeros((n * c, h * w), dtype=gy.dtype)
        rows = np.repeat(np.arange(n * c), gy.shape[2] * gy.shape[3])
        np.add.at(gx, (rows, self.switch.reshape(-1)), gy.reshape(-1))
        return gx.reshape(self.x_shape)


class AvgPool2d(Function):
    """y[n, c, i, j] = sum of x over window (i, j) / divisor. The divisor counts padding (PyTorch's
    count_include_pad): with start = i*stride - padding and end = min(start + kernel_size, H + padding),
    the rows divisor is end - start (a ceil-mode window running past the padding counts only up to it).
    Backward: every input pixel of window (i, j) gets gy[n, c, i, j] / divisor; overlaps sum."""

    def __init__(self, kernel_size=3, stride=2, padding=0, ceil_mode=False):
        self.k, self.s, self.p, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def _windows(self, size, out):
        for i in range(out):
            start = i * self.s - self.p
            end = min(start + self.k, size + self.p)
            yield i, max(start, 0), min(end, size), end - start

    def forward(self, x):
        n, c, h, w = self.x_shape = x.shape
        oh = pool_output_size(h, self.k, self.s, self.p, self.ceil_mode)
        ow = pool_output_size(w, self.k, self.s, self.p, self.ceil_mode)
        y = np.empty((n, c, oh, ow), dtype=x.dtype)
        for i, h0, h1, dh in self._windows(h, oh):
            for j, w0, w1, dw in self._windows(w, ow):
                y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / (dh * dw)
        return y

    def backward(self, gy):
        n, c, h, w = self.x_shape
        gx = np.zeros(self.x_shape, dtype=gy.dtype)
        for i, h0, h1, dh in self._windows(h, gy.shape[2]):
            for j, w0, w1, dw in self._windows(w, gy.shape[3]):
                gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] / (dh * dw)
        return gx
