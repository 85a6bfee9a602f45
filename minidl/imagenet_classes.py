"""The 1000 ILSVRC-2012 class names, in the index order of torchvision's ImageNet weights.

Read from ``data/imagenet_classes.txt`` (one name a line), shipped with the package.
"""
from importlib import resources

IMAGENET_CLASSES = tuple(
    line.strip() for line in resources.files("minidl.data").joinpath("imagenet_classes.txt")
    .read_text(encoding="utf-8").splitlines() if line.strip())

if len(IMAGENET_CLASSES) != 1000:
    raise RuntimeError(f"minidl/data/imagenet_classes.txt holds {len(IMAGENET_CLASSES)} names, expected 1000")
