"""Lesson 04 solution: local response normalisation across channels (AlexNet paper, section 3.3)."""
import numpy as np

import minidl as md


def window_sum(a, size):
    """s[c] = sum of a[c'] for c' in the window of `size` channels around c (zero beyond the ends)."""
    C = a.shape[1]
    lo, hi = size // 2, (size - 1) // 2
    padded = np.pad(a, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    csum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
    return csum[:, size:size + C] - csum[:, :C]


class LRN(md.Function):
    """b = a / d**beta with d = k + alpha * (window sum of a^2)."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a):
        self.a = a
        self.d = self.k + self.alpha * window_sum(a * a, self.size)
        self.b = a * self.d ** -self.beta
        return self.b

    def backward(self, gb):
        # db[c]/da[c'] = delta(c, c') d[c]^-beta - 2 alpha beta a[c] a[c'] d[c]^(-beta-1) for c' in window(c).
        # Summing over c (the window is symmetric, so "c' in window(c)" = "c in window'(c')"):
        # ga = gb * d^-beta - 2 alpha beta a * windowsum'(gb * b / d)
        t = gb * self.b / self.d
        lo, hi = self.size // 2, (self.size - 1) // 2
        C = t.shape[1]
        padded = np.pad(t, ((0, 0), (hi, lo), (0, 0), (0, 0)))  # the mirrored window for even sizes
        csum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
        back = csum[:, self.size:self.size + C] - csum[:, :C]
        return gb * self.d ** -self.beta - 2 * self.alpha * self.beta * self.a * back
