"""ZFNet (Zeiler & Fergus, ECCV 2014, Figure 3): AlexNet redesigned after looking at its filters.

Layer 1 becomes 7x7 stride 2 (not 11x11 stride 4: fewer dead and aliased filters) and conv2
gets stride 2; the LRN-then-overlapping-pool pattern stays, and there are no towers.
Pooling rounds up (ceil mode, as Caffe does), which gives the figure's sizes:

    layer   filters              output (224x224 input)
    conv1   96 7x7/2 pad 1       96 x 110 x 110   ReLU, LRN, max-pool 3x3/2 -> 55
    conv2   256 5x5/2            256 x 26 x 26    ReLU, LRN, max-pool 3x3/2 -> 13
    conv3   384 3x3 pad 1        384 x 13 x 13
    conv4   384 3x3 pad 1        384 x 13 x 13
    conv5   256 3x3 pad 1        256 x 13 x 13    max-pool 3x3/2 -> 6
    fc6     4096                 dropout 0.5
    fc7     4096                 dropout 0.5
    fc8     num_classes

Parameters: 62,357,608 (1000 classes).
"""
from collections import OrderedDict

from minidl import nn


class ZFNet(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
        self.features = nn.Sequential(OrderedDict([
            # 3 x 224 x 224
            ("conv1", nn.Conv2d(3, 96, 7, stride=2, padding=1)),          # 96 x 110 x 110
            ("relu1", nn.ReLU()),
            ("norm1", nn.LocalResponseNorm(**lrn)),
            ("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),         # 96 x 55 x 55
            ("conv2", nn.Conv2d(96, 256, 5, stride=2)),                   # 256 x 26 x 26
            ("relu2", nn.ReLU()),
            ("norm2", nn.LocalResponseNorm(**lrn)),
            ("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),         # 256 x 13 x 13
            ("conv3", nn.Conv2d(256, 384, 3, padding=1)),                 # 384 x 13 x 13
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, 3, padding=1)),                 # 384 x 13 x 13
            ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, 3, padding=1)),                 # 256 x 13 x 13
            ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(3, stride=2, ceil_mode=True)),         # 256 x 6 x 6
        ]))
        self.flatten = nn.Flatten()                                       # 9216
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(256 * 6 * 6, 4096)),
            ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def zfnet(num_classes=1000, dropout=0.5):
    """ZFNet as in Zeiler & Fergus's Figure 3 (224x224 input)."""
    return ZFNet(num_classes, dropout)
