"""Losses: cross-entropy over integer class targets (softmax + negative log-likelihood, fused)."""
import numpy as np

from minidl import backend
from minidl.autograd import Function, Tensor


class CrossEntropy(Function):
    """mean_n -log softmax(x_n)[t_n] for logits x (N, K) and integer targets t (N,)."""

    def __init__(self, target):
        self.target = target

    def forward(self, x):
        xp = backend.xp_of(x)
        t = self.target
        if x.ndim != 2:
            raise ValueError(f"cross_entropy: logits must be (N, classes), got shape {x.shape}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"cross_entropy: target must have shape ({x.shape[0]},) for logits {x.shape}, "
                             f"got {t.shape}")
        if t.size and (int(t.min()) < 0 or int(t.max()) >= x.shape[1]):
            raise ValueError(f"cross_entropy: targets must lie in [0, {x.shape[1] - 1}], "
                             f"got values from {int(t.min())} to {int(t.max())}")
        shifted = x - x.max(axis=1, keepdims=True)
        log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self.log_p = shifted - log_z
        n = x.shape[0]
        return -self.log_p[xp.arange(n), t].mean().astype(x.dtype)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        n = self.log_p.shape[0]
        g = xp.exp(self.log_p)
        g[xp.arange(n), self.target] -= 1
        return g * (gy / n)


def _target_array(target, like):
    t = target.data if isinstance(target, Tensor) else target
    xp = backend.xp_of(like.data)
    t = xp.asarray(t) if backend.device_of(t) == backend.device_of(like.data) else backend.to_device(t, like.device)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}")
    return t.astype(np.int64, copy=False)


def cross_entropy(logits, target):
    """Mean cross-entropy of logits (N, K) against integer targets (N,) (an int array or Tensor)."""
    return CrossEntropy(_target_array(target, logits))(logits)
