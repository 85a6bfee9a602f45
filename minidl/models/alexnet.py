"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) — the paper's net and torchvision's variant.

``alexnet(variant="paper")`` follows the paper's Figure 2 as Caffe's bvlc_alexnet builds it
(227x227 input so that 11x11/4 gives 55x55):

    layer   filters            output (227x227 input)
    conv1   96 11x11/4         96 x 55 x 55   ReLU, LRN, max-pool 3x3/2 -> 27
    conv2   256 5x5 pad 2      256 x 27 x 27  two towers (groups=2), ReLU, LRN, max-pool -> 13
    conv3   384 3x3 pad 1      384 x 13 x 13  sees both towers
    conv4   384 3x3 pad 1      384 x 13 x 13  two towers
    conv5   256 3x3 pad 1      256 x 13 x 13  two towers, max-pool -> 6
    fc6     4096               dropout 0.5
    fc7     4096               dropout 0.5
    fc8     num_classes

LRN is the paper's: b = a / (2 + 1e-4 * sum over 5 neighbouring channels of a^2) ** 0.75.
Parameters: 60,965,224 (1000 classes).

``alexnet(variant="torchvision")`` is torchvision's single-tower net (64/192/384/256/256
filters, no LRN, adaptive 6x6 average pool, dropout before the FC layers), with torchvision's
parameter names (``features.0.weight`` ... ``classifier.6.bias``): 61,100,840 parameters.
"""
from collections import OrderedDict

from minidl import nn

VARIANTS = ("paper", "torchvision")


class AlexNet(nn.Module):
    """The paper's two-tower AlexNet (towers as grouped convolutions), Caffe layer names."""

    def __init__(self, num_classes=1000, dropout=0.5, width=1.0):
        super().__init__()
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
        # width < 1 narrows every layer (even counts: two towers), e.g. tiny nets for tests
        c1, c2, c3, c4, c5, f6 = (max(2, 2 * round(n * width / 2)) for n in (96, 256, 384, 384, 256, 4096))
        self.features = nn.Sequential(OrderedDict([
            # 3 x 227 x 227
            ("conv1", nn.Conv2d(3, c1, 11, stride=4)),                 # 96 x 55 x 55
            ("relu1", nn.ReLU()),
            ("norm1", nn.LocalResponseNorm(**lrn)),
            ("pool1", nn.MaxPool2d(3, stride=2)),                      # 96 x 27 x 27 (overlapping pool)
            ("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=2)),     # 256 x 27 x 27 (two towers)
            ("relu2", nn.ReLU()),
            ("norm2", nn.LocalResponseNorm(**lrn)),
            ("pool2", nn.MaxPool2d(3, stride=2)),                      # 256 x 13 x 13
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),              # 384 x 13 x 13 (towers talk here)
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=2)),    # 384 x 13 x 13 (two towers)
            ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=2)),    # 256 x 13 x 13 (two towers)
            ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(3, stride=2)),                      # 256 x 6 x 6
        ]))
        self.flatten = nn.Flatten()                                    # 9216
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(c5 * 6 * 6, f6)),                          # 4096
            ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(f6, f6)),                                # 4096
            ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(f6, num_classes)),                       # num_classes
        ]))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


class AlexNetTorchvision(nn.Module):
    """torchvision.models.AlexNet: one tower, no LRN; keys features.N / classifier.N."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),   # 0: 64 x 55 x 55
            nn.ReLU(),                                   # 1
            nn.MaxPool2d(3, stride=2),                   # 2: 64 x 27 x 27
            nn.Conv2d(64, 192, 5, padding=2),            # 3: 192 x 27 x 27
            nn.ReLU(),                                   # 4
            nn.MaxPool2d(3, stride=2),                   # 5: 192 x 13 x 13
            nn.Conv2d(192, 384, 3, padding=1),           # 6: 384 x 13 x 13
            nn.ReLU(),                                   # 7
            nn.Conv2d(384, 256, 3, padding=1),           # 8: 256 x 13 x 13
            nn.ReLU(),                                   # 9
            nn.Conv2d(256, 256, 3, padding=1),           # 10: 256 x 13 x 13
            nn.ReLU(),                                   # 11
            nn.MaxPool2d(3, stride=2),                   # 12: 256 x 6 x 6
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))      # 256 x 6 x 6 whatever the input size
        self.flatten = nn.Flatten()                      # 9216
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),                         # 0
            nn.Linear(256 * 6 * 6, 4096),                # 1
            nn.ReLU(),                                   # 2
            nn.Dropout(dropout),                         # 3
            nn.Linear(4096, 4096),                       # 4
            nn.ReLU(),                                   # 5
            nn.Linear(4096, num_classes),                # 6
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def alexnet(num_classes=1000, variant="paper", dropout=0.5, width=1.0, towers=None, pretrained=False):
    """AlexNet: ``variant="paper"`` (two towers as grouped convolutions, LRN, 227 input) or ``"torchvision"``.

    pretrained=True (torchvision variant, 1000 classes): torchvision's ImageNet weights
    (alexnet-owt-7be5be79.pth, found in the PyTorch or minidl cache or downloaded; minidl.hub).

    The towers on two MPI ranks, as the paper's two GPUs ran them, are built by
    ``minidl.distributed.towers.two_tower_alexnet`` (models know nothing of MPI)."""
    if pretrained and variant != "torchvision":
        raise ValueError(f'alexnet: pretrained weights exist for variant="torchvision" only (torchvision\'s); '
                         f'the paper\'s two-tower net has none published in this format, got variant={variant!r}')
    if towers is not None:
        raise ValueError(f"alexnet: towers={towers!r} is not a model option; the two towers on two MPI ranks are "
                         f"built by minidl.distributed.towers.two_tower_alexnet(num_classes, dropout, width)")
    if variant == "paper":
        return AlexNet(num_classes, dropout, width)
    if variant == "torchvision":
        from minidl import hub
        if hub.check_pretrained("alexnet_torchvision", pretrained, num_classes):
            return hub.load_pretrained(AlexNetTorchvision(num_classes, dropout), "alexnet_torchvision")
        return AlexNetTorchvision(num_classes, dropout)
    raise ValueError(f"alexnet: variant must be one of {VARIANTS}, got {variant!r}")
