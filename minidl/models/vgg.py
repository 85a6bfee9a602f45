"""VGG (Simonyan & Zisserman, ICLR 2015, Table 1): stacks of 3x3 convolutions, stride 1, pad 1.

Configurations (numbers are conv output channels, "M" a 2x2/2 max-pool):

    A (vgg11)  64 M 128 M 256 256 M 512 512 M 512 512 M
    B (vgg13)  64 64 M 128 128 M 256 256 M 512 512 M 512 512 M
    D (vgg16)  64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
    E (vgg19)  64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M

At 224x224 the five stages give 64x112x112, 128x56x56, 256x28x28, 512x14x14, 512x7x7;
then an adaptive 7x7 average pool (identity at 224, so small inputs also run), FC 4096,
FC 4096 (ReLU, dropout 0.5 each), FC num_classes. Two stacked 3x3 convs see 5x5, three see
7x7, with 27C^2 weights against 49C^2 for one 7x7 and three non-linearities instead of one.

Parameter names are torchvision's (``features.N``, ``classifier.N``); ``batch_norm=True`` adds a
BatchNorm after every conv, as torchvision's ``vgg16_bn``. ``pretrained=True`` loads torchvision's
ImageNet weights (found in the PyTorch or minidl cache, or downloaded: minidl.hub).
Parameters: vgg11 132,863,336 · vgg13 133,047,848 · vgg16 138,357,544 · vgg19 143,667,240.
"""
from minidl import nn
from minidl.models._common import constant_, init_conv_kaiming, normal_

CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_features(config, batch_norm=False, in_channels=3):
    """The conv stack of one configuration as a flat Sequential (torchvision's numbering)."""
    layers = []
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))         # halves the size
        else:
            layers.append(nn.Conv2d(in_channels, v, 3, padding=1))  # keeps the size
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, config="D", batch_norm=False, num_classes=1000, dropout=0.5):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"VGG: config must be one of {sorted(CONFIGS)}, got {config!r}")
        self.features = make_features(CONFIGS[config], batch_norm)   # 512 x 7 x 7 at 224
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))                  # 512 x 7 x 7
        self.flatten = nn.Flatten()                                  # 25088
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),                            # 0: 4096
            nn.ReLU(),                                               # 1
            nn.Dropout(dropout),                                     # 2
            nn.Linear(4096, 4096),                                   # 3: 4096
            nn.ReLU(),                                               # 4
            nn.Dropout(dropout),                                     # 5
            nn.Linear(4096, num_classes),                            # 6: num_classes
        )
        # torchvision's initialisation: He-normal convs, N(0, 0.01) FC weights, zero biases.
        init_conv_kaiming(self)
        for m in self.classifier:
            if isinstance(m, nn.Linear):
                normal_(m.weight, 0.01)
                constant_(m.bias, 0.0)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def _pretrained(model, name, pretrained, num_classes):
    """pretrained=True: torchvision's ImageNet weights for ``name`` (minidl.hub finds or downloads them)."""
    from minidl import hub
    if hub.check_pretrained(name, pretrained, num_classes):
        hub.load_pretrained(model, name)
    return model


def vgg11(num_classes=1000, batch_norm=False, dropout=0.5, pretrained=False):
    """Configuration A (8 conv + 3 FC layers)."""
    return _pretrained(VGG("A", batch_norm, num_classes, dropout),
                       f"vgg11{'_bn' if batch_norm else ''}", pretrained, num_classes)


def vgg13(num_classes=1000, batch_norm=False, dropout=0.5, pretrained=False):
    """Configuration B (10 conv + 3 FC layers)."""
    return _pretrained(VGG("B", batch_norm, num_classes, dropout),
                       f"vgg13{'_bn' if batch_norm else ''}", pretrained, num_classes)


def vgg16(num_classes=1000, batch_norm=False, dropout=0.5, pretrained=False):
    """Configuration D (13 conv + 3 FC layers)."""
    return _pretrained(VGG("D", batch_norm, num_classes, dropout),
                       f"vgg16{'_bn' if batch_norm else ''}", pretrained, num_classes)


def vgg19(num_classes=1000, batch_norm=False, dropout=0.5, pretrained=False):
    """Configuration E (16 conv + 3 FC layers)."""
    return _pretrained(VGG("E", batch_norm, num_classes, dropout),
                       f"vgg19{'_bn' if batch_norm else ''}", pretrained, num_classes)


def vgg11_bn(num_classes=1000, dropout=0.5, pretrained=False):
    return vgg11(num_classes, batch_norm=True, dropout=dropout, pretrained=pretrained)


def vgg13_bn(num_classes=1000, dropout=0.5, pretrained=False):
    return vgg13(num_classes, batch_norm=True, dropout=dropout, pretrained=pretrained)


def vgg16_bn(num_classes=1000, dropout=0.5, pretrained=False):
    return vgg16(num_classes, batch_norm=True, dropout=dropout, pretrained=pretrained)


def vgg19_bn(num_classes=1000, dropout=0.5, pretrained=False):
    return vgg19(num_classes, batch_norm=True, dropout=dropout, pretrained=pretrained)
