"""Lesson 07 solution: a VGG block — n 3x3 convolutions (stride 1, padding 1) with ReLUs, then a 2x2 max-pool."""
from minidl import nn


def vgg_block(cin, cout, n):
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))
