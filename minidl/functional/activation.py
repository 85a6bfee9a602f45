"""Activations: ReLU (AlexNet's f(x) = max(0, x)), tanh, sigmoid, softmax, log_softmax."""
from minidl import backend, kernels
from minidl.autograd import Function


class ReLU(Function):
    """y = max(x, 0); backward needs only where x > 0: a bool mask on the CPU, a bit mask on the GPU."""

    def forward(self, x):
        y, self.saved = kernels.of(x).relu_forward(x)
        return y

    def backward(self, gy):
        return kernels.of(gy).relu_backward(gy, self.saved)


class Tanh(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.xp_of(x)
        self.y = (xp.tanh(x * 0.5) * 0.5 + 0.5).astype(x.dtype, copy=False)  # stable for large |x|
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Softmax(Function):
    """exp(x - max) / sum: subtracting the max keeps logits of +-1000 finite."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.xp_of(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """x - max - log(sum(exp(x - max))): the log-sum-exp trick."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.xp_of(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, gy):
        xp = backend.xp_of(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def relu(x):
    return ReLU()(x)


def tanh(x):
    return Tanh()(x)


def sigmoid(x):
    return Sigmoid()(x)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)
