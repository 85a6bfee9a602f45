"""Network in Network (Lin, Chen & Yan, ICLR 2014) — the ImageNet model of the paper's authors.

An "mlpconv" block is a k x k convolution followed by two 1x1 convolutions, each with a ReLU:
a small MLP applied at every pixel. The 1x1 convolutions mix channels without looking at
neighbours, the idea GoogLeNet's Inception reductions build on. There are no FC layers: the
last block outputs one map per class and a global average pool turns each map into a score.

    block   convolutions                      output (224x224 input)
    1       11x11/4 96, 1x1 96, 1x1 96        96 x 54 x 54    max-pool 3x3/2 -> 27
    2       5x5 pad 2 256, 1x1 256, 1x1 256   256 x 27 x 27   max-pool 3x3/2 -> 13
    3       3x3 pad 1 384, 1x1 384, 1x1 384   384 x 13 x 13   max-pool 3x3/2 -> 6, dropout 0.5
    4       3x3 pad 1 1024, 1x1 1024, 1x1 C   C x 6 x 6       global average pool -> C

Pools round up (ceil mode), as in the Caffe model. Parameters (1000 classes): 7,595,176.
"""
from minidl import nn
from minidl.models._common import init_conv_kaiming


def mlpconv(in_channels, out_channels, kernel_size, stride=1, padding=0, mid_channels=None):
    """k x k conv -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU (keys 0, 2, 4)."""
    mid = out_channels if mid_channels is None else mid_channels
    return nn.Sequential(
        nn.Conv2d(in_channels, mid, kernel_size, stride=stride, padding=padding), nn.ReLU(),
        nn.Conv2d(mid, mid, 1), nn.ReLU(),
        nn.Conv2d(mid, out_channels, 1), nn.ReLU(),
    )


class NiN(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        # 3 x 224 x 224
        self.block1 = mlpconv(3, 96, 11, stride=4)                             # 96 x 54 x 54
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)                 # 96 x 27 x 27
        self.block2 = mlpconv(96, 256, 5, padding=2)                           # 256 x 27 x 27
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)                 # 256 x 13 x 13
        self.block3 = mlpconv(256, 384, 3, padding=1)                          # 384 x 13 x 13
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)                 # 384 x 6 x 6
        self.dropout = nn.Dropout(dropout)
        self.block4 = mlpconv(384, num_classes, 3, padding=1, mid_channels=1024)  # C x 6 x 6
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))                            # C x 1 x 1
        self.flatten = nn.Flatten()                                            # C
        init_conv_kaiming(self)

    def forward(self, x):
        x = self.pool1(self.block1(x))
        x = self.pool2(self.block2(x))
        x = self.dropout(self.pool3(self.block3(x)))
        return self.flatten(self.avgpool(self.block4(x)))


def nin(num_classes=1000, dropout=0.5):
    """Network in Network for ImageNet (four mlpconv blocks, global average pooling)."""
    return NiN(num_classes, dropout)
