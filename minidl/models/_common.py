"""Pieces shared by the model files: weight initialisers and the conv-(BN)-ReLU unit.

The initialisers draw from minidl's seeded generator (``md.manual_seed``) and write float32
arrays into ``Parameter.data`` in place of the layer defaults.
"""
import math

import numpy as np

from minidl import nn
from minidl import random


def kaiming_normal_(param, fan):
    """He et al. 2015: N(0, 2 / fan) — the initialisation that lets deep ReLU stacks train."""
    std = math.sqrt(2.0 / fan)
    param.data = (random.generator().standard_normal(param.shape, dtype=np.float32) * np.float32(std))


def normal_(param, std):
    param.data = random.generator().standard_normal(param.shape, dtype=np.float32) * np.float32(std)


def constant_(param, value):
    param.data = np.full(param.shape, value, dtype=np.float32)


def init_conv_kaiming(model):
    """Every Conv2d: kaiming normal over fan-out (as torchvision's VGG, GoogLeNet-free ResNet), bias 0;
    every BatchNorm2d: weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out_c, _, kh, kw = m.weight.shape
            kaiming_normal_(m.weight, out_c * kh * kw)
            if m.bias is not None:
                constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            constant_(m.weight, 1.0)
            constant_(m.bias, 0.0)


class ConvReLU(nn.Module):
    """conv (with bias) then ReLU: the unit of the pre-BatchNorm papers (AlexNet, GoogLeNet, NiN).

    Keys ``conv.weight``, ``conv.bias`` — the same layout as torchvision's BasicConv2d minus ``bn``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


class BasicConv2d(nn.Module):
    """torchvision's GoogLeNet unit: conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU.

    Keys ``conv.weight``, ``bn.weight``, ``bn.bias``, ``bn.running_mean``, ``bn.running_var``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))
