"""Part 6: composites of minidl's layers — a VGG block, an Inception module, the residual blocks.

The grader copies minidl's own block's weights into yours, so use exactly the layer names given
(they are minidl's: minidl.models.vgg.make_features, googlenet.Inception, resnet.BasicBlock/Bottleneck).
"""
from minidl import functional as F
from minidl import nn
from minidl.models._common import ConvReLU  # conv (with bias) then ReLU; keys conv.weight, conv.bias


def vgg_block(in_channels, out_channels, num_convs):
    """nn.Sequential of num_convs x (3x3 conv, stride 1, padding 1, then ReLU), then a 2x2/2 max-pool.
    (N, in, H, W) -> (N, out, H // 2, W // 2); keys 0.weight, 0.bias, 2.weight, ..."""
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2, stride=2))
    return nn.Sequential(*layers)


class Inception(nn.Module):
    """Four branches on the same input, concatenated along channels in this order:
    branch1 = ConvReLU(in, ch1x1, 1)
    branch2 = Sequential(ConvReLU(in, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
    branch3 = Sequential(ConvReLU(in, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
    branch4 = Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True), ConvReLU(in, pool_proj, 1))
    (N, in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = ConvReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(ConvReLU(in_channels, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvReLU(in_channels, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvReLU(in_channels, pool_proj, 1))

    def forward(self, x):
        return F.concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=1)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut), shortcut = x, or downsample(x) when given;
    shortcut=False: no addition (the plain net's block).
    conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False), bn1 = BatchNorm2d(planes),
    conv2 = Conv2d(planes, planes, 3, padding=1, bias=False), bn2 = BatchNorm2d(planes), relu = ReLU()."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None, shortcut=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to 4 * planes, each with BatchNorm, ReLU after the
    first two; then relu(out + shortcut) as in BasicBlock.
    conv1 = Conv2d(in_planes, planes, 1, bias=False), bn1; conv2 = Conv2d(planes, planes, 3, stride=stride,
    padding=1, bias=False), bn2; conv3 = Conv2d(planes, 4 * planes, 1, bias=False), bn3; relu."""
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None, shortcut=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)
