"""Part 1: ReLU, the linear layer, softmax + cross-entropy — each a minidl Function.

A Function's ``forward`` gets raw NumPy arrays and saves on ``self`` what ``backward`` needs;
``backward`` gets the gradient of the output and returns one gradient per input of forward.
"""
import numpy as np

from minidl import Function


class ReLU(Function):
    """y = max(x, 0), x of any shape. Backward: gx = gy where x > 0, else 0."""

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


class Linear(Function):
    """y = x @ weight.T + bias; x (N, in), weight (out, in), bias (out,) -> y (N, out).

    Backward: gx = gy @ weight (N, in), gweight = gy.T @ x (out, in), gbias = gy summed over N (out,).
    """

    def forward(self, x, weight, bias):
        self.x, self.weight = x, weight
        return x @ weight.T + bias

    def backward(self, gy):
        gx = gy @ self.weight
        gweight = gy.T @ self.x
        gbias = gy.sum(axis=0)
        return gx, gweight, gbias


class SoftmaxCrossEntropy(Function):
    """loss = mean over n of -log softmax(logits[n])[target[n]]; logits (N, K), target (N,) ints -> 0-d array.

    Stable: softmax(z) = exp(z - max z) / sum exp(z - max z), so logits of size 1000 stay finite.
    Backward: g_logits = (softmax(logits) - onehot(target)) / N * gy.
    """

    def __init__(self, target):
        self.target = target

    def forward(self, logits):
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.p = np.exp(log_p)
        return np.array(-log_p[np.arange(n), self.target].mean(), dtype=logits.dtype)

    def backward(self, gy):
        n = self.p.shape[0]
        g = self.p.copy()
        g[np.arange(n), self.target] -= 1
        return g * (gy / n)
