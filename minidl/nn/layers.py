"""Layers with PyTorch's default initialisations. Each forward calls one op of minidl.functional."""
import math

import numpy as np

from minidl import functional as F
from minidl import random
from minidl.kernels._geometry import pair
from minidl.nn.module import Module, Parameter


def _uniform(shape, bound):
    """U(-bound, bound) from minidl's seeded generator, float32."""
    return random.generator().uniform(-bound, bound, size=shape).astype(np.float32)


class Linear(Module):
    """y = x W^T + b; W (out, in). Init as PyTorch: U(-1/sqrt(in), 1/sqrt(in)) for W and b."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_uniform((out_features, in_features), bound))
        self.bias = Parameter(_uniform((out_features,), bound)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution, weight (out, in/groups, kh, kw). Init as PyTorch (kaiming-uniform, a=sqrt(5))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 algorithm="auto"):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        if algorithm not in ("auto", "im2col", "winograd"):
            raise ValueError(f"Conv2d: algorithm must be 'auto', 'im2col' or 'winograd', got {algorithm!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size)
        self.stride, self.padding = pair("Conv2d", "stride", stride), pair("Conv2d", "padding", padding)
        self.groups, self.algorithm = groups, algorithm  # see F.conv2d: "auto", "im2col" or "winograd"
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(_uniform((out_channels, in_channels // groups) + self.kernel_size, bound))
        self.bias = Parameter(_uniform((out_channels,), bound)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups, algorithm=self.algorithm)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.algorithm != "auto":
            s += f", algorithm={self.algorithm!r}"
        return s + ("" if self.bias is not None else ", bias=False")


class ReLU(Module):
    def __init__(self, inplace=False):  # inplace accepted for PyTorch-style code; minidl never mutates
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Identity(Module):
    def forward(self, x):
        return x


class _Pool2d(Module):
    """What max and average pooling share: a window (kernel_size, stride = kernel_size by default,
    padding, ceil_mode). Neither is the other: code that inverts a max-pool (the deconvnet's
    unpooling with switches) must not take an average-pool for one."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class LocalResponseNorm(Module):
    """The AlexNet paper's LRN: b = a / (k + alpha * sum of a^2 over `size` channels) ** beta."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class BatchNorm2d(Module):
    """Per-channel batch norm over (N, H, W); running buffers updated in training (momentum 0.1)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        if x.ndim != 4:  # F.batch_norm takes (N, C) too; the 2d layer is for feature maps only, as PyTorch's
            raise ValueError(f"BatchNorm2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if self.training:
            self.num_batches_tracked += 1
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_axis=1):
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x):
        return F.flatten(x, self.start_axis)
