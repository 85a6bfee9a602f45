"""Part 2: im2col / col2im and the convolution built on them (stride, padding; groups as a bonus).

Shapes: x (N, C, H, W); a kernel kh x kw; oh = (H + 2*padding - kh) // stride + 1, ow likewise.
im2col's matrix is (C*kh*kw, N*oh*ow): row (c, i, j) = c*kh*kw + i*kw + j, column (n, y, x) =
(n*oh + y)*ow + x, holding x[n, c, y*stride - padding + i, x*stride - padding + j] (0 in the padding).
"""
import numpy as np

from minidl import Function


def im2col(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow): every receptive field as a column."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    col = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose(1, 0, 2, 3)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kh, kw, stride=1, padding=0):
    """col (C*kh*kw, N*oh*ow) -> (N, C, H, W): the adjoint of im2col. Every entry is added back to the
    pixel it came from; where windows overlap the contributions sum; the padding is cut away."""
    n, c, h, w = x_shape
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    col = col.reshape(c, kh, kw, n, oh, ow)
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    return xp[:, :, padding:padding + h, padding:padding + w]


class Conv2d(Function):
    """y = conv(x, weight) + bias: x (N, C, H, W), weight (K, C/groups, kh, kw), bias (K,) -> (N, K, oh, ow).

    forward:  col = im2col(x); y = W (K, C*kh*kw) @ col, reshaped (K, N, oh, ow) -> (N, K, oh, ow)
    backward: gy as (K, N*oh*ow); gweight = gy @ col.T; gbias = gy summed; gx = col2im(W.T @ gy)
    groups g (bonus): the rows of col and of W split into g blocks; block i of W multiplies block i of col.
    """

    def __init__(self, stride=1, padding=0, groups=1):
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x, weight, bias):
        n, c, h, w = x.shape
        k, cg, kh, kw = weight.shape
        g = self.groups
        oh, ow = (h + 2 * self.padding - kh) // self.stride + 1, (w + 2 * self.padding - kw) // self.stride + 1
        col = im2col(x, kh, kw, self.stride, self.padding)
        colg = col.reshape(g, cg * kh * kw, -1)
        wg = weight.reshape(g, k // g, cg * kh * kw)
        y = np.concatenate([wg[i] @ colg[i] for i in range(g)]) + bias[:, None]
        self.col, self.weight, self.x_shape = col, weight, x.shape
        return np.ascontiguousarray(y.reshape(k, n, oh, ow).transpose(1, 0, 2, 3))

    def backward(self, gy):
        k, cg, kh, kw = self.weight.shape
        g = self.groups
        gy2 = gy.transpose(1, 0, 2, 3).reshape(k, -1)
        gyg = gy2.reshape(g, k // g, -1)
        colg = self.col.reshape(g, cg * kh * kw, -1)
        wg = self.weight.reshape(g, k // g, cg * kh * kw)
        gweight = np.concatenate([gyg[i] @ colg[i].T for i in range(g)]).reshape(self.weight.shape)
        gcol = np.concatenate([wg[i].T @ gyg[i] for i in range(g)])
        gx = col2im(gcol, self.x_shape, kh, kw, self.stride, self.padding)
        gbias = gy2.sum(axis=1)
        return gx, gweight, gbias
