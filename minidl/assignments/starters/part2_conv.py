"""Part 2: im2col / col2im and the convolution built on them (stride, padding; groups as a bonus).

Shapes: x (N, C, H, W); a kernel kh x kw; oh = (H + 2*padding - kh) // stride + 1, ow likewise.
im2col's matrix is (C*kh*kw, N*oh*ow): row (c, i, j) = c*kh*kw + i*kw + j, column (n, y, x) =
(n*oh + y)*ow + x, holding x[n, c, y*stride - padding + i, x*stride - padding + j] (0 in the padding).
Check: ``minidl assignments check DIR im2col col2im conv conv_groups``.
"""
import numpy as np

from minidl import Function


def im2col(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow): every receptive field as a column."""
    raise NotImplementedError("im2col: pad x (np.pad), then copy every kernel offset (i, j) into its rows")


def col2im(col, x_shape, kh, kw, stride=1, padding=0):
    """col (C*kh*kw, N*oh*ow) -> (N, C, H, W): the adjoint of im2col. Every entry is added back to the
    pixel it came from; where windows overlap the contributions sum; the padding is cut away."""
    raise NotImplementedError("col2im: add (+=) every kernel offset's entries back into a zero padded "
                              "image, then crop the padding")


class Conv2d(Function):
    """y = conv(x, weight) + bias: x (N, C, H, W), weight (K, C/groups, kh, kw), bias (K,) -> (N, K, oh, ow).

    forward:  col = im2col(x); y = W (K, C*kh*kw) @ col, reshaped (K, N, oh, ow) -> (N, K, oh, ow)
    backward: gy as (K, N*oh*ow); gweight = gy @ col.T; gbias = gy summed; gx = col2im(W.T @ gy)
    groups g (bonus): the rows of col and of W split into g blocks; block i of W multiplies block i of col.
    """

    def __init__(self, stride=1, padding=0, groups=1):
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x, weight, bias):
        if self.groups != 1:
            raise NotImplementedError("conv_groups (bonus): split the rows of col and of W into groups blocks, "
                                      "one matrix product per block")
        raise NotImplementedError("conv: im2col, one matrix product with W reshaped (K, C*kh*kw), add the bias, "
                                  "reshape to (N, K, oh, ow)")

    def backward(self, gy):
        raise NotImplementedError("conv: return (gx, gweight, gbias): gweight = gy @ col.T, gx = col2im(W.T @ gy)")
