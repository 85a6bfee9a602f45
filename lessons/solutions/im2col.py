"""Lesson 03 solution: convolution as im2col + one matrix product, and its backward via col2im."""
import numpy as np

import minidl as md


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def im2col(x, k, s=1, p=0):
    """x (N, C, H, W) -> col (C*k*k, N*oh*ow): column (n, y, x) holds the window under output (y, x)."""
    N, C, H, W = x.shape
    oh, ow = out_size(H, k, s, p), out_size(W, k, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    col = np.empty((C, k, k, N, oh, ow), dtype=x.dtype)
    for i in range(k):              # one kernel offset (i, j) at a time: a strided slice of the input
        for j in range(k):
            col[:, i, j] = xp[:, :, i:i + s * oh:s, j:j + s * ow:s].transpose(1, 0, 2, 3)
    return col.reshape(C * k * k, N * oh * ow)


def col2im(col, x_shape, k, s=1, p=0):
    """The adjoint of im2col: every column's values are added back to the pixels they came from."""
    N, C, H, W = x_shape
    oh, ow = out_size(H, k, s, p), out_size(W, k, s, p)
    col = col.reshape(C, k, k, N, oh, ow)
    xp = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=col.dtype)
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + s * oh:s, j:j + s * ow:s] += col[:, i, j].transpose(1, 0, 2, 3)  # +=: windows overlap
    return xp[:, :, p:p + H, p:p + W]


class Conv2dGEMM(md.Function):
    """y = W_mat @ col: weight (K, C, k, k) as a (K, C*k*k) matrix times the im2col matrix."""

    def __init__(self, stride=1, padding=0):
        self.stride, self.padding = stride, padding

    def forward(self, x, w):
        N, C, H, W = x.shape
        K, _, k, _ = w.shape
        oh, ow = out_size(H, k, self.stride, self.padding), out_size(W, k, self.stride, self.padding)
        self.col = im2col(x, k, self.stride, self.padding)
        self.w, self.x_shape = w, x.shape
        y = w.reshape(K, -1) @ self.col                      # (K, N*oh*ow): every unit is one dot product
        return y.reshape(K, N, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        K, C, k, _ = self.w.shape
        g = gy.transpose(1, 0, 2, 3).reshape(K, -1)           # (K, N*oh*ow)
        gw = (g @ self.col.T).reshape(self.w.shape)
        gx = col2im(self.w.reshape(K, -1).T @ g, self.x_shape, k, self.stride, self.padding)
        return gx, gw
