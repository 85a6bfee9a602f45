"""Lesson 05 solution: max pooling that records its switches, and unpooling with them (its backward)."""
import numpy as np

import minidl as md


class MaxPoolSwitches(md.Function):
    """k x k max pooling with stride s (no padding). Forward remembers, for every output, which input
    element was the maximum (the switch); backward — the deconvnet's unpooling — puts each gradient there."""

    def __init__(self, k=2, s=2):
        self.k, self.s = k, s

    def forward(self, x):
        N, C, H, W = x.shape
        k, s = self.k, self.s
        oh, ow = (H - k) // s + 1, (W - k) // s + 1
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N,C,oh,ow,k,k)
        flat = win.reshape(N, C, oh, ow, k * k)
        arg = flat.argmax(axis=-1)
        di, dj = np.divmod(arg, k)                                  # offset of the max inside its window
        self.rows = np.arange(oh)[:, None] * s + di                 # the switch: input row ...
        self.cols = np.arange(ow)[None, :] * s + dj                 # ... and column of every maximum
        self.x_shape = x.shape
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(self, gy):
        N, C, H, W = self.x_shape
        gx = np.zeros(self.x_shape, dtype=gy.dtype)
        n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
        np.add.at(gx, (n[:, :, None, None], c[:, :, None, None], self.rows, self.cols), gy)  # windows may overlap
        return gx
