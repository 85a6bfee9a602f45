"""Part 6: composites of minidl's layers — a VGG block, an Inception module, the residual blocks.

The grader copies minidl's own block's weights into yours, so use exactly the layer names given
(they are minidl's: minidl.models.vgg.make_features, googlenet.Inception, resnet.BasicBlock/Bottleneck).
Check: ``minidl assignments check DIR vgg_block inception basic_block bottleneck``.
"""
from minidl import functional as F
from minidl import nn
from minidl.models._common import ConvReLU  # conv (with bias) then ReLU; keys conv.weight, conv.bias


def vgg_block(in_channels, out_channels, num_convs):
    """nn.Sequential of num_convs x (3x3 conv, stride 1, padding 1, then ReLU), then a 2x2/2 max-pool.
    (N, in, H, W) -> (N, out, H // 2, W // 2); keys 0.weight, 0.bias, 2.weight, ..."""
    raise NotImplementedError("vgg_block: return nn.Sequential(conv, ReLU, ..., nn.MaxPool2d(2, stride=2))")


class Inception(nn.Module):
    """Four branches on the same input, concatenated along channels in this order:
    branch1 = ConvReLU(in, ch1x1, 1)
    branch2 = Sequential(ConvReLU(in, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
    branch3 = Sequential(ConvReLU(in, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
    branch4 = Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True), ConvReLU(in, pool_proj, 1))
    (N, in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        raise NotImplementedError("inception: build branch1 ... branch4 as the docstring says")

    def forward(self, x):
        raise NotImplementedError("inception: run the four branches on x and concatenate them (F.concat, axis=1)")


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut), shortcut = x, or downsample(x) when given;
    shortcut=False: no addition (the plain net's block).
    conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False), bn1 = BatchNorm2d(planes),
    conv2 = Conv2d(planes, planes, 3, padding=1, bias=False), bn2 = BatchNorm2d(planes), relu = ReLU()."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None, shortcut=True):
        super().__init__()
        raise NotImplementedError("basic_block: build conv1, bn1, relu, conv2, bn2; keep downsample and shortcut")

    def forward(self, x):
        raise NotImplementedError("basic_block: the two convolutions, then relu(out + shortcut)")


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to 4 * planes, each with BatchNorm, ReLU after the
    first two; then relu(out + shortcut) as in BasicBlock.
    conv1 = Conv2d(in_planes, planes, 1, bias=False), bn1; conv2 = Conv2d(planes, planes, 3, stride=stride,
    padding=1, bias=False), bn2; conv3 = Conv2d(planes, 4 * planes, 1, bias=False), bn3; relu."""
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, downsample=None, shortcut=True):
        super().__init__()
        raise NotImplementedError("bottleneck: build conv1, bn1, conv2, bn2, conv3, bn3, relu; keep downsample "
                                  "and shortcut")

    def forward(self, x):
        raise NotImplementedError("bottleneck: 1x1, 3x3, 1x1 with BatchNorm, then relu(out + shortcut)")
