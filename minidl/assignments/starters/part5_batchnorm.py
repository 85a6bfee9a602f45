"""Part 5: batch normalisation (Ioffe & Szegedy 2015), training and eval.
Check: ``minidl assignments check DIR batchnorm_train batchnorm_eval``.
"""
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
    Hint: x.reshape(N, C, -1) handles both input shapes.
    """

    def __init__(self, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, weight, bias):
        raise NotImplementedError("batchnorm: normalise per channel (batch statistics in training, updating the "
                                  "running buffers in place; the buffers in eval), then scale and shift")

    def backward(self, gy):
        raise NotImplementedError("batchnorm: return (gx, gweight, gbias); in training gx has the mean and "
                                  "variance terms")
