"""Part 5: batch normalisation (Ioffe & Szegedy 2015), training and eval."""
import numpy as np

from minidl import Function


class BatchNorm(Function):
    """x (N, C) or (N, C, H, W), weight (C,), bias (C,) -> y, same shape as x; statistics per channel.

    Training: mean and biased variance over N (and H, W); xhat = (x - mean) / sqrt(var + eps);
    y = weight * xhat + bias; the running buffers (C,) are updated in place,
    r = (1 - momentum) * r + momentum * statistic, the variance unbiased (times m / (m - 1), m = N*H*W).
    Eval: the running buffers take the place of the batch statistics (and stay unchanged).
    Backward (training), per channel with means over N, H, W and gxhat = gy * weight:
        gx = (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)) / sqrt(var + eps)
    (eval: gx = gxhat / sqrt(var + eps)); gweight = sum(gy * xhat); gbias = sum(gy).
    """

    def __init__(self, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, weight, bias):
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)
        if self.training:
            mean, var = x3.mean(axis=(0, 2)), x3.var(axis=(0, 2))
            m = x3.size // c
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1 - self.momentum
            self.running_var += self.momentum * var * m / (m - 1)
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.xhat = (x3 - mean[:, None]) * self.inv_std[:, None]
        self.weight = weight
        return (self.xhat * weight[:, None] + bias[:, None]).reshape(x.shape)

    def backward(self, gy):
        gy3 = gy.reshape(gy.shape[0], gy.shape[1], -1)
        xhat, inv_std = self.xhat, self.inv_std
        gxhat = gy3 * self.weight[:, None]
        if self.training:
            gx = inv_std[:, None] * (gxhat - gxhat.mean(axis=(0, 2), keepdims=True)
                                     - xhat * (gxhat * xhat).mean(axis=(0, 2), keepdims=True))
        else:
            gx = gxhat * inv_std[:, None]
        return gx.reshape(gy.shape), (gy3 * xhat).sum(axis=(0, 2)), gy3.sum(axis=(0, 2))
