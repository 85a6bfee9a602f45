"""Part 1: ReLU, the linear layer, softmax + cross-entropy — each a minidl Function.

A Function's ``forward`` gets raw NumPy arrays and saves on ``self`` what ``backward`` needs;
``backward`` gets the gradient of the output and returns one gradient per input of forward.
Check your work: ``minidl assignments check DIR relu linear softmax_cross_entropy``.
"""
import numpy as np

from minidl import Function


class ReLU(Function):
    """y = max(x, 0), x of any shape. Backward: gx = gy where x > 0, else 0."""

    def forward(self, x):
        raise NotImplementedError("relu: compute y = max(x, 0) and save the mask x > 0 for backward")

    def backward(self, gy):
        raise NotImplementedError("relu: return gy where x > 0, else 0")


class Linear(Function):
    """y = x @ weight.T + bias; x (N, in), weight (out, in), bias (out,) -> y (N, out).

    Backward: gx = gy @ weight (N, in), gweight = gy.T @ x (out, in), gbias = gy summed over N (out,).
    """

    def forward(self, x, weight, bias):
        raise NotImplementedError("linear: save x and weight, return x @ weight.T + bias")

    def backward(self, gy):
        raise NotImplementedError("linear: return (gx, gweight, gbias), shaped like x, weight, bias")


class SoftmaxCrossEntropy(Function):
    """loss = mean over n of -log softmax(logits[n])[target[n]]; logits (N, K), target (N,) ints -> 0-d array.

    Stable: softmax(z) = exp(z - max z) / sum exp(z - max z), so logits of size 1000 stay finite.
    Backward: g_logits = (softmax(logits) - onehot(target)) / N * gy.
    """

    def __init__(self, target):
        self.target = target

    def forward(self, logits):
        raise NotImplementedError("softmax_cross_entropy: the mean of -log softmax(logits)[target], with the "
                                  "max subtracted first; return it as a 0-d array (np.array(value, logits.dtype))")

    def backward(self, gy):
        raise NotImplementedError("softmax_cross_entropy: return (softmax - onehot(target)) / N * gy")
