"""Layers and containers: ``Module``, ``Parameter``, ``Sequential`` and the ConvNet layers."""
from minidl.nn.module import Module, Parameter, Sequential, ModuleList, save_npz  # noqa: F401
from minidl.nn.layers import (Linear, Conv2d, ReLU, Tanh, Identity, MaxPool2d, AvgPool2d,  # noqa: F401
                              AdaptiveAvgPool2d, LocalResponseNorm, BatchNorm2d, Dropout, Flatten)
