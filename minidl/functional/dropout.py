"""Inverted dropout (Hinton et al. 2012; AlexNet used p = 0.5 in its two 4096-unit layers)."""
from minidl import backend, random
from minidl.autograd import Function


class Dropout(Function):
    """Training: y = x * mask / (1 - p), mask ~ Bernoulli(1 - p). Eval: y = x."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = backend.xp_of(x)
        keep = random.generator(xp).random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(x, p=0.5, training=True):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return Dropout(p)(x)
