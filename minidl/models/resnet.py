"""ResNet (He, Zhang, Ren & Sun, CVPR 2016), the plain baselines, and the CIFAR-10 nets.

ImageNet nets (the paper's Table 1; torchvision's names and stride placement):

    stage     output (224x224)   18 / 34                 50 / 101 / 152
    conv1     64 x 112 x 112     7x7/2, 64, BN, ReLU     same
    maxpool   64 x 56 x 56       3x3/2 pad 1             same
    layer1    56 x 56            [3x3 64, 3x3 64] x 2/3   [1x1 64, 3x3 64, 1x1 256] x 3/3/3
    layer2    28 x 28            [3x3 128] pairs x 2/4    [.., 512] x 4/4/8
    layer3    14 x 14            [3x3 256] pairs x 2/6    [.., 1024] x 6/23/36
    layer4    7 x 7              [3x3 512] pairs x 2/3    [.., 2048] x 3/3/3
    avgpool   1 x 1              global average           same
    fc        num_classes

A block outputs relu(F(x) + shortcut(x)): the shortcut is the identity, or a 1x1 strided conv +
BN ("downsample", the paper's option B) where the size or width changes. The first block of
layers 2-4 downsamples with stride 2 — in the 3x3 conv of a bottleneck (torchvision's "v1.5").
``zero_init_residual=True`` zeroes the last BN's scale in every block, so each block starts as
the identity. ``pretrained=True`` loads torchvision's ImageNet weights (minidl.hub). Parameters: 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808.

``plain18`` / ``plain34``: the same stacks with no shortcuts (the paper's plain baselines).

``resnet_cifar(depth)`` / ``plain_cifar(depth)``, depth = 6n + 2 (20, 32, 44, 56, 110): the
paper's CIFAR-10 nets — 3x3 conv 16, three stages of n basic blocks with 16 / 32 / 64 filters at
32x32 / 16x16 / 8x8, global average pool, FC 10. The shortcuts are option A: the identity, or,
where the stage halves the size and doubles the width, stride-2 subsampling with zero-padded
extra channels (no parameters). ResNet-20: 269,722 parameters.
"""
from minidl import backend
from minidl import functional as F
from minidl import nn
from minidl.autograd import Tensor
from minidl.models._common import constant_, init_conv_kaiming

# ---- blocks -------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    downsample: a module for the shortcut (None = identity); shortcut=False drops it (plain net).
    """
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
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand to 4x planes; plus the shortcut."""
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


class ShortcutA(nn.Module):
    """Option A shortcut: keep every ``stride``-th pixel, append zero channels up to ``out_planes``.

    Built from existing differentiable ops (slicing, concat), so it has no parameters and its
    backward is theirs: the gradient of the kept pixels passes through, the zero channels get none.
    The extra channels are split evenly before and after the input's, as in the common CIFAR code.
    """

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_planes - self.in_planes
        if extra == 0:
            return x
        before = extra // 2
        n, _, h, w = x.shape
        parts = []
        if before:
            parts.append(_zeros_like(x, (n, before, h, w)))
        parts.append(x)
        parts.append(_zeros_like(x, (n, extra - before, h, w)))
        return F.concat(parts, axis=1)

    def extra_repr(self):
        return f"{self.in_planes} -> {self.out_planes}, stride={self.stride}"


def _zeros_like(x, shape):
    """A constant zero Tensor (no gradient) of ``shape`` with x's dtype and device."""
    return Tensor(backend.xp_of(x.data).zeros(shape, dtype=x.dtype))


# ---- ImageNet ResNets -----------------------------------------------------------------------------


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, shortcut=True):
        super().__init__()
        self.shortcut = shortcut
        self.in_planes = 64
        # 3 x 224 x 224
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)   # 64 x 112 x 112
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)                  # 64 x 56 x 56
        self.layer1 = self._make_layer(block, 64, layers[0])                 # 64*e x 56 x 56
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)      # 128*e x 28 x 28
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)      # 256*e x 14 x 14
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)      # 512*e x 7 x 7
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))                          # 512*e x 1 x 1
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512 * block.expansion, num_classes)             # num_classes

        init_conv_kaiming(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    constant_(m.bn3.weight, 0.0)
                elif isinstance(m, BasicBlock):
                    constant_(m.bn2.weight, 0.0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        out_planes = planes * block.expansion
        if self.shortcut and (stride != 1 or self.in_planes != out_planes):
            downsample = nn.Sequential(nn.Conv2d(self.in_planes, out_planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out_planes))
        layers = [block(self.in_planes, planes, stride, downsample, self.shortcut)]
        self.in_planes = out_planes
        for _ in range(1, blocks):
            layers.append(block(self.in_planes, planes, shortcut=self.shortcut))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _pretrained(model, name, pretrained, num_classes):
    """pretrained=True: torchvision's ImageNet weights for ``name`` (minidl.hub finds or downloads them)."""
    from minidl import hub
    if hub.check_pretrained(name, pretrained, num_classes):
        hub.load_pretrained(model, name)
    return model


def resnet18(num_classes=1000, zero_init_residual=False, pretrained=False):
    return _pretrained(ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual), "resnet18", pretrained, num_classes)


def resnet34(num_classes=1000, zero_init_residual=False, pretrained=False):
    return _pretrained(ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual), "resnet34", pretrained, num_classes)


def resnet50(num_classes=1000, zero_init_residual=False, pretrained=False):
    return _pretrained(ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual), "resnet50", pretrained, num_classes)


def resnet101(num_classes=1000, zero_init_residual=False, pretrained=False):
    return _pretrained(ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual), "resnet101", pretrained, num_classes)


def resnet152(num_classes=1000, zero_init_residual=False, pretrained=False):
    return _pretrained(ResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual), "resnet152", pretrained, num_classes)


def plain18(num_classes=1000):
    """The 18-layer plain baseline: resnet18's layers, no shortcuts."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, shortcut=False)


def plain34(num_classes=1000):
    """The 34-layer plain baseline: resnet34's layers, no shortcuts (worse than plain18)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, shortcut=False)


# ---- CIFAR-10 nets (the paper's section 4.2) ----------------------------------------------------


class CifarResNet(nn.Module):
    def __init__(self, depth=20, num_classes=10, shortcut=True, zero_init_residual=False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"resnet_cifar: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth, self.shortcut = depth, shortcut
        # 3 x 32 x 32
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)      # 16 x 32 x 32
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.in_planes = 16
        self.layer1 = self._make_layer(16, n, 1)                     # 16 x 32 x 32
        self.layer2 = self._make_layer(32, n, 2)                     # 32 x 16 x 16
        self.layer3 = self._make_layer(64, n, 2)                     # 64 x 8 x 8
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))                  # 64 x 1 x 1
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)                         # num_classes
        init_conv_kaiming(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    constant_(m.bn2.weight, 0.0)

    def _make_layer(self, planes, blocks, stride):
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            downsample = None
            if self.shortcut and (s != 1 or self.in_planes != planes):
                downsample = ShortcutA(self.in_planes, planes, s)
            layers.append(BasicBlock(self.in_planes, planes, s, downsample, self.shortcut))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def resnet_cifar(depth=20, num_classes=10, zero_init_residual=False):
    """CIFAR-10 ResNet of depth 6n + 2 with option-A (parameter-free) shortcuts."""
    return CifarResNet(depth, num_classes, True, zero_init_residual)


def plain_cifar(depth=20, num_classes=10):
    """The CIFAR-10 plain net of depth 6n + 2 (no shortcuts)."""
    return CifarResNet(depth, num_classes, shortcut=False)
