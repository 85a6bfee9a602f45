"""Part 4: AlexNet's local response normalisation and (inverted) dropout."""
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

    def _window(self, c, channels):
        return max(c - self.size // 2, 0), min(c + (self.size - 1) // 2, channels - 1)

    def forward(self, x):
        channels = x.shape[1]
        sq = x * x
        scale = np.empty_like(x)
        for c in range(channels):
            lo, hi = self._window(c, channels)
            scale[:, c] = self.k + self.alpha * sq[:, lo:hi + 1].sum(axis=1)
        self.x, self.scale = x, scale
        self.y = x * scale ** -self.beta
        return self.y

    def backward(self, gy):
        x, y, scale = self.x, self.y, self.scale
        channels = x.shape[1]
        gx = gy * scale ** -self.beta
        t = gy * y / scale
        for c in range(channels):
            lo, hi = self._window(c, channels)
            gx[:, lo:hi + 1] -= 2 * self.alpha * self.beta * x[:, lo:hi + 1] * t[:, c:c + 1]
        return gx


class Dropout(Function):
    """Inverted dropout. Training: y = x * mask / (1 - p), mask 1 with probability 1 - p (a fresh one each
    forward, drawn from minidl.random.generator() so md.manual_seed repeats it); eval: y = x.
    Backward: gy times the same mask / (1 - p) (eval: gy)."""

    def __init__(self, p=0.5, training=True):
        self.p, self.training = p, training

    def forward(self, x):
        if not self.training:
            self.mask = None
            return x
        keep = random.generator().random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, gy):
        return gy if self.mask is None else gy * self.mask
