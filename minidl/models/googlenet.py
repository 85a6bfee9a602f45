"""GoogLeNet (Szegedy et al., CVPR 2015, Table 1) and torchvision's BatchNorm twin.

    stage                       output (224x224 input)
    conv1  7x7/2, 64            64 x 112 x 112
    max-pool 3x3/2              64 x 56 x 56      then LRN (paper)
    conv2  1x1, 64 (reduce)     64 x 56 x 56
    conv3  3x3, 192             192 x 56 x 56     then LRN (paper)
    max-pool 3x3/2              192 x 28 x 28
    inception 3a, 3b            256, 480 x 28 x 28
    max-pool 3x3/2              480 x 14 x 14
    inception 4a                512 x 14 x 14  -> aux1 (training only)
    inception 4b, 4c, 4d        512, 512, 528 x 14 x 14  -> aux2 after 4d
    inception 4e                832 x 14 x 14
    max-pool 3x3/2              832 x 7 x 7       (torchvision: 2x2/2)
    inception 5a, 5b            832, 1024 x 7 x 7
    global average pool         1024 x 1 x 1      (the paper's 7x7/1 average pool at 224)
    dropout 0.4, FC             num_classes       (no hidden FC layers)

An Inception module runs four branches on the same input and concatenates their channels:
1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3/1 max-pool -> 1x1 "pool projection". The 1x1
reductions (Network in Network's idea) are what keep the 3x3 and 5x5 convolutions cheap.
Each auxiliary classifier: 5x5/3 average pool (4x4 out), 1x1 conv 128, FC 1024, dropout 0.7,
FC num_classes. Pools round up (ceil mode), as in Caffe and torchvision.

``variant="paper"``: convs with biases and ReLU, a true 5x5, LRN after the stem; parameters
6,998,552 without the aux heads, 13,378,280 with both. ``variant="torchvision"``: every conv
is conv (no bias) -> BatchNorm -> ReLU, the "5x5" branch uses a 3x3 conv (a bug kept for its
weights), no LRN, dropout 0.2, and torchvision's names (``conv1.conv.weight``,
``inception3a.branch2.1.bn.running_mean``, ``aux1.fc1.weight``, ``fc.weight``): 6,624,904 /
13,004,888 parameters, so torchvision's weights load.

In training mode with ``aux_logits=True`` the forward returns ``(logits, aux1, aux2)``; in
eval mode only the logits.
"""
from minidl import functional as F
from minidl import nn
from minidl.models._common import BasicConv2d, ConvReLU, constant_, init_conv_kaiming, normal_

VARIANTS = ("paper", "torchvision")

# name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) — the paper's Table 1
INCEPTION_CONFIGS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: out = ch1x1 + ch3x3 + ch5x5 + pool_proj.

    unit: the conv block class (ConvReLU for the paper, BasicConv2d for torchvision);
    kernel5: the "5x5" branch's kernel (5 in the paper, 3 in torchvision).
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 unit=ConvReLU, kernel5=5):
        super().__init__()
        self.branch1 = unit(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(unit(in_channels, ch3x3red, 1),
                                     unit(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(unit(in_channels, ch5x5red, 1),
                                     unit(ch5x5red, ch5x5, kernel5, padding=kernel5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     unit(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        return F.concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg-pool to 4x4, 1x1 conv 128, FC 1024 + ReLU, dropout 0.7, FC."""

    def __init__(self, in_channels, num_classes, unit=ConvReLU, adaptive=False, dropout=0.7):
        super().__init__()
        # The paper pools 5x5/3 (14x14 -> 4x4 at 224); torchvision pools adaptively to 4x4.
        self.pool = nn.AdaptiveAvgPool2d((4, 4)) if adaptive else nn.AvgPool2d(5, stride=3)
        self.conv = unit(in_channels, 128, 1)             # 128 x 4 x 4
        self.flatten = nn.Flatten()                       # 2048
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.flatten(self.conv(self.pool(x)))
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, variant="paper", transform_input=False,
                 dropout=None, dropout_aux=0.7):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"googlenet: variant must be one of {VARIANTS}, got {variant!r}")
        paper = variant == "paper"
        unit, kernel5 = (ConvReLU, 5) if paper else (BasicConv2d, 3)
        if dropout is None:
            dropout = 0.4 if paper else 0.2
        self.variant, self.aux_logits = variant, aux_logits
        self.transform_input = transform_input
        lrn = dict(size=5, alpha=2e-5, beta=0.75, k=1.0)  # Caffe's LRN(5, 1e-4) in the paper's form

        # stem                                                          3 x 224 x 224
        self.conv1 = unit(3, 64, 7, stride=2, padding=3)                # 64 x 112 x 112
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)       # 64 x 56 x 56
        self.lrn1 = nn.LocalResponseNorm(**lrn) if paper else nn.Identity()
        self.conv2 = unit(64, 64, 1)                                    # 64 x 56 x 56
        self.conv3 = unit(64, 192, 3, padding=1)                        # 192 x 56 x 56
        self.lrn2 = nn.LocalResponseNorm(**lrn) if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)       # 192 x 28 x 28

        def inception(name):
            return Inception(*INCEPTION_CONFIGS[name], unit=unit, kernel5=kernel5)

        self.inception3a = inception("3a")                              # 256 x 28 x 28
        self.inception3b = inception("3b")                              # 480 x 28 x 28
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)       # 480 x 14 x 14
        self.inception4a = inception("4a")                              # 512 x 14 x 14
        self.inception4b = inception("4b")                              # 512 x 14 x 14
        self.inception4c = inception("4c")                              # 512 x 14 x 14
        self.inception4d = inception("4d")                              # 528 x 14 x 14
        self.inception4e = inception("4e")                              # 832 x 14 x 14
        self.maxpool4 = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if paper
                         else nn.MaxPool2d(2, stride=2, ceil_mode=True))  # 832 x 7 x 7
        self.inception5a = inception("5a")                              # 832 x 7 x 7
        self.inception5b = inception("5b")                              # 1024 x 7 x 7

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, unit, adaptive=not paper, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, unit, adaptive=not paper, dropout=dropout_aux)
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))                     # 1024 x 1 x 1
        self.flatten = nn.Flatten()                                     # 1024
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)                          # num_classes

        if paper:
            init_conv_kaiming(self)
        else:  # torchvision: N(0, 0.01) for convs and FC layers, BatchNorm 1 / 0
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    normal_(m.weight, 0.01)
                    if m.bias is not None:
                        constant_(m.bias, 0.0)

    def _transform_input(self, x):
        """torchvision's transform_input: ImageNet-normalised input -> the (x - 0.5) / 0.5 scaling
        its original weights were trained with."""
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        chans = [x[:, c:c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
        return F.concat(chans, axis=1)

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(self.lrn1(self.maxpool1(self.conv1(x)))))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(self.flatten(self.avgpool(x))))
        if aux:
            return logits, aux1, aux2
        return logits


def googlenet(num_classes=1000, aux_logits=None, variant="paper", transform_input=None, dropout=None,
              pretrained=False):
    """GoogLeNet: ``variant="paper"`` (Table 1, LRN, true 5x5) or ``"torchvision"`` (BatchNorm).

    pretrained=True (torchvision variant, 1000 classes): torchvision's ImageNet weights
    (googlenet-1378be20.pth, ported from TensorFlow; minidl.hub finds or downloads it). As in
    torchvision, ``transform_input`` then defaults to True (those weights expect inputs scaled to
    [-1, 1]; it rescales ImageNet-normalised ones) and ``aux_logits`` to False (the file's
    auxiliary heads were never trained). Otherwise the defaults are aux_logits=True, no transform.
    """
    from minidl import hub
    if pretrained and variant != "torchvision":
        raise ValueError(f'googlenet: pretrained weights exist for variant="torchvision" only (torchvision\'s), '
                         f'got variant={variant!r}')
    aux_logits = not pretrained if aux_logits is None else aux_logits
    transform_input = bool(pretrained) if transform_input is None else transform_input
    if not hub.check_pretrained("googlenet_torchvision", pretrained, num_classes):
        return GoogLeNet(num_classes, aux_logits, variant, transform_input, dropout)
    net = GoogLeNet(num_classes, True, variant, transform_input, dropout)   # the file holds the aux heads
    hub.load_pretrained(net, "googlenet_torchvision")
    if not aux_logits:
        net.aux1 = net.aux2 = None
        net.aux_logits = False
    return net
