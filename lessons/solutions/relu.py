"""Lesson 02 solution: ReLU as a minidl Function."""
import minidl as md


class ReLU(md.Function):
    """f(x) = max(0, x); the gradient passes where x > 0 and is 0 elsewhere."""

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask
