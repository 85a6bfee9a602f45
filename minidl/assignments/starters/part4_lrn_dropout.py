"""Part 4: AlexNet's local response normalisation and (inverted) dropout.
Check: ``minidl assignments check DIR lrn dropout``.
"""
import numpy as np

from minidl import Function, random


class LocalResponseNorm(Function):
    """The AlexNet paper's LRN, x (N, C, ...) -> y of the same shape:

        scale[c] = k + alpha * sum of x[j]^2 over channels j = c - size//2 ... c + (size-1)//2 (clipped)
        y[c]     = x[c] * scale[c] ** -beta

    alpha is NOT divided by size (PyTorch's LocalResponseNorm divides it). Backward: channel j appears in
    its own output and in the scale of every c whose window holds it:

        gx[j] = gy[j] * scale[j] ** -beta - 2 * alpha * beta * x[j] * sum over those c of gy[c] * y[c] / scale[c]
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        raise NotImplementedError("lrn: compute scale over each channel's window, save x, y and scale, return y")

    def backward(self, gy):
        raise NotImplementedError("lrn: the direct term gy * scale**-beta plus the cross-channel term")


class Dropout(Function):
    """Inverted dropout. Training: y = x * mask / (1 - p), mask 1 with probability 1 - p (a fresh one each
    forward, drawn from minidl.random.generator() so md.manual_seed repeats it); eval: y = x.
    Backward: gy times the same mask / (1 - p) (eval: gy)."""

    def __init__(self, p=0.5, training=True):
        self.p, self.training = p, training

    def forward(self, x):
        raise NotImplementedError("dropout: in training keep each unit with probability 1 - p and divide by 1 - p; "
                                  "in eval return x")

    def backward(self, gy):
        raise NotImplementedError("dropout: gy times the mask of forward (already divided by 1 - p)")
