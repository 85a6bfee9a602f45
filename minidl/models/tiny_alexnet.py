"""TinyAlexNet: AlexNet in miniature, the default net of ``minidl train`` (32x32 inputs, a CPU minute).

    conv1  5x5, 16, pad 2   32 -> 32    ReLU, LRN(5), max-pool 3x3/2 -> 15
    conv2  5x5, 32, pad 2   15 -> 15    ReLU, LRN(5), max-pool 3x3/2 -> 7
    fc3    32*7*7 -> 128    ReLU, dropout 0.5
    fc4    128 -> num_classes

The same ingredients as AlexNet (ReLU, LRN, overlapping pooling, dropout) at a size a laptop
trains in a minute. AlexNet has 96/256 filters, 4096 hidden units and dropout before both of its
first two fully connected layers; here one dropout keeps a two-minute CPU run converging.
"""
import numpy as np

from minidl import nn, random


class TinyAlexNet(nn.Module):
    """(N, in_channels, image_size, image_size) -> (N, num_classes) logits."""

    def __init__(self, num_classes=10, in_channels=1, image_size=32, width=(16, 32), hidden=128, dropout=0.5):
        super().__init__()
        c1, c2 = width
        side = image_size
        for _ in range(2):
            side = (side - 3) // 2 + 1  # each 3x3/2 pool
        if side < 1:
            raise ValueError(f"tiny_alexnet: image_size {image_size} is too small (needs >= 7)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        # He et al. (2015) initialisation, N(0, 2 / fan_in), zero biases: with PyTorch's smaller
        # default init this net needs several times more epochs to get going.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = int(np.prod(m.weight.shape[1:]))
                std = np.float32(np.sqrt(2.0 / fan_in))
                m.weight.data = random.generator().standard_normal(m.weight.shape, dtype=np.float32) * std
                m.bias.data = np.zeros(m.bias.shape, dtype=np.float32)

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_alexnet(num_classes=10, in_channels=1, image_size=32, **kwargs):
    """TinyAlexNet for ``in_channels`` x ``image_size`` x ``image_size`` inputs (width, hidden, dropout in kwargs)."""
    return TinyAlexNet(num_classes, in_channels, image_size, **kwargs)
