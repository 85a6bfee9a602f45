"""Data specifications of the ``minidl`` command and their standard transforms.

A spec is ``digits`` (the embedded set), ``cifar10:PATH`` (the python batches), ``cifar10`` or
``imagenette`` (downloaded once into minidl's cache, checksum verified: minidl.data.cifar,
minidl.data.imagenette) or a folder ``PATH`` in the ImageNet layout (``./cifar10`` for a folder
of that name). A folder with ``train/`` and ``val/`` (or ``test/``) inside uses
those; a plain ``PATH/<class>/<image>`` folder is split per class with a fixed seed, 10% held out.

``data_config`` describes the data for a run (kind, classes, channels, size, mean/std, padding);
it is stored in the run's ``config.json`` so that ``minidl eval``/``classify`` rebuild exactly
the same preprocessing. ``make_transform(config, split)`` gives the transform for
``"train"`` (augmentation), ``"test"`` (a single view) or ``"tencrop"`` (ten views: corners, centre
and their mirrors; for the digits, which train without flips, the five unmirrored ones).
"""
import os

import numpy as np

from minidl.data import transforms as T
from minidl.data.cifar import CIFAR10, CIFAR10_CLASSES
from minidl.data.digits import DIGITS_CLASSES, Digits
from minidl.data.folder import ImageFolder
from minidl.data.imagenette import IMAGENETTE_CLASSES, WNIDS, download_imagenette
from minidl.data.loader import Subset

# Mean and standard deviation of the 32x32 digits' training split (one grey channel, in [0, 1]);
# tests/data/test_presets.py recomputes them.
DIGITS_MEAN, DIGITS_STD = 0.3055, 0.3237
# CIFAR-10 training set, per RGB channel.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
HOLDOUT_FRACTION, HOLDOUT_SEED = 0.1, 0


def parse_spec(spec):
    """("digits", None) | ("cifar10", path or None: the cache) | ("imagenette", None) | ("folder", path)."""
    spec = str(spec)
    if spec in ("digits", "cifar10", "imagenette"):
        return spec, None
    if spec.startswith("cifar10:"):
        return "cifar10", spec[len("cifar10:"):]
    if os.path.isdir(spec):
        return "folder", spec
    raise ValueError(f"--data {spec!r}: expected 'digits', 'cifar10' or 'imagenette' (downloaded into the cache), "
                     f"'cifar10:PATH' or an image folder PATH (PATH/<class>/<image>; no such folder)")


def _folder_splits(path):
    for train, held in (("train", "val"), ("train", "test")):
        if os.path.isdir(os.path.join(path, train)) and os.path.isdir(os.path.join(path, held)):
            return os.path.join(path, train), os.path.join(path, held)
    return None


def data_config(spec, image_size=None, in_channels=None):
    """The description of the data for a run. ``image_size``/``in_channels`` are what the model
    takes (None: the data's own: 32 and 1 for digits, 32 and 3 for CIFAR-10, 224 and 3 for folders)."""
    kind, path = parse_spec(spec)
    if kind == "digits":
        size, channels = image_size or 32, in_channels or 1
        return {"data": spec, "kind": kind, "classes": list(DIGITS_CLASSES), "image_size": size,
                "in_channels": channels, "mean": [DIGITS_MEAN] * channels, "std": [DIGITS_STD] * channels,
                "pad": max(1, size // 16), "native_size": 32}
    if in_channels not in (None, 3):
        raise ValueError(f"--data {spec}: colour images need a model with 3 input channels, not {in_channels}")
    if kind == "cifar10":
        size = image_size or 32
        return {"data": spec, "kind": kind, "classes": list(CIFAR10_CLASSES), "image_size": size, "in_channels": 3,
                "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "pad": max(1, size // 8), "native_size": 32}
    if kind == "imagenette":  # the 160 px version: a 224 model sees slightly upscaled photos
        return {"data": spec, "kind": kind, "classes": list(IMAGENETTE_CLASSES), "image_size": image_size or 160,
                "in_channels": 3, "mean": list(T.IMAGENET_MEAN), "std": list(T.IMAGENET_STD), "pad": 0}
    splits = _folder_splits(path)
    classes = ImageFolder(splits[0] if splits else path).classes
    return {"data": spec, "kind": kind, "classes": classes, "image_size": image_size or 224, "in_channels": 3,
            "mean": list(T.IMAGENET_MEAN), "std": list(T.IMAGENET_STD), "pad": 0}


def make_transform(config, split):
    """The transform for ``split`` in "train", "test", "tencrop" (see the module docstring)."""
    if split not in ("train", "test", "tencrop"):
        raise ValueError(f"make_transform: split must be train, test or tencrop, got {split!r}")
    size, pad, kind = config["image_size"], config["pad"], config["kind"]
    norm = T.Normalize(config["mean"], config["std"])
    if kind in ("digits", "cifar10"):
        steps = [T.Resize((size, size))] if size != config["native_size"] else []
        if kind == "cifar10":
            steps = [T.ToArray()] + steps       # CIFAR samples are Pillow images
        if split == "train":
            steps.append(T.RandomCrop(size, padding=pad))
            if kind == "cifar10":
                steps.append(T.RandomHorizontalFlip())
        elif split == "tencrop":  # the digits train without flips (a mirrored digit is another symbol): 5 views
            steps += [T.Pad(pad), T.TenCrop(size, mirror=kind == "cifar10")]
        return T.Compose(steps + [norm])
    # an ImageNet-style folder: the GoogLeNet/ResNet training crops, the AlexNet colour noise
    resize = int(round(size * 256 / 224))
    if split == "train":
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToArray(),
                          T.PCALighting(0.1), norm])
    if split == "tencrop":
        return T.Compose([T.Resize(resize), T.TenCrop(size), T.ToArray(), norm])
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToArray(), norm])


def tencrop_views(config):
    """How many views the "tencrop" transform gives: 10, or 5 (no mirrors) for the digits."""
    return 5 if config["kind"] == "digits" else 10


def build_dataset(config, train, transform=None):
    """The training (``train=True``) or held-out split described by ``config``."""
    kind, path = parse_spec(config["data"])
    if kind == "digits":
        return Digits(train=train, transform=transform, channels=config["in_channels"])
    if kind == "cifar10":
        return CIFAR10(path, train=train, transform=transform)   # path None: the cache, downloaded once
    if kind == "imagenette":
        folder = os.path.join(download_imagenette(), "train" if train else "val")
        ds = ImageFolder(folder, transform=transform)
        if tuple(ds.classes) != WNIDS:
            raise ValueError(f"{folder}: expected the 10 Imagenette class folders {', '.join(WNIDS)}, "
                             f"found {', '.join(ds.classes[:12])}")
        return ds
    splits = _folder_splits(path)
    if splits:
        ds = ImageFolder(splits[0] if train else splits[1], transform=transform)
        if ds.classes != config["classes"]:
            raise ValueError(f"{splits[1]}: its class folders differ from those of {splits[0]}")
        return ds
    ds = ImageFolder(path, transform=transform)
    rng = np.random.default_rng(HOLDOUT_SEED)
    train_idx, held_idx = [], []
    for c in range(len(ds.classes)):
        idx = np.flatnonzero(ds.targets == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(len(idx) * HOLDOUT_FRACTION)) if len(idx) > 1 else 0
        held_idx.append(idx[:n_held])
        train_idx.append(idx[n_held:])
    return Subset(ds, np.sort(np.concatenate(train_idx if train else held_idx)))


def prepare_image(config, img):
    """A Pillow image (any mode) -> the model's input array (C, H, W), with the test transform.

    For the digits (white ink on black, grey) the image is converted to grey, scaled to [0, 1]
    and inverted when its border is bright (a dark digit on white paper)."""
    if config["kind"] == "digits":
        native = config.get("native_size", 32)
        grey = T.ToArray()(img.convert("L").resize((native, native)))
        border = np.concatenate([grey[0, 0], grey[0, -1], grey[0, :, 0], grey[0, :, -1]])
        if border.mean() > 0.5:
            grey = 1.0 - grey
        x = np.repeat(grey, config["in_channels"], axis=0)
        return make_transform(config, "test")(x)
    img = img.convert("RGB")
    if config["kind"] == "cifar10":
        img = img.resize((config["native_size"], config["native_size"]))
    return make_transform(config, "test")(img)
