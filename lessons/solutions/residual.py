"""Lesson 08 solution: the basic residual block, out = relu(F(x) + x), and its plain twin (no shortcut)."""
from minidl import nn


class ResidualBlock(nn.Module):
    """F(x) = bn(conv(relu(bn(conv(x))))), two 3x3 convs at constant width; shortcut=False makes it plain."""

    def __init__(self, channels, shortcut=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.shortcut = shortcut

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + x if self.shortcut else out)
