"""The embedded default data set: scikit-learn's bundled handwritten digits at 32x32.

1,797 real 8x8 grayscale scans of the digits 0-9 (UCI "optical recognition of handwritten
digits"), shipped inside scikit-learn, so nothing is downloaded. They are upscaled bilinearly to
32x32 so that an AlexNet-style net (5x5 convolutions, overlapping 3x3/2 pooling) has room to
work, scaled to [0, 1], and split into train (80%) and test (20%) per class with a fixed seed, so
every run and every machine sees the same held-out 359 images.

A sample is a float32 array (1, 32, 32) — one channel, which is what the default net
(``minidl.train.tiny_alexnet(in_channels=1)``) takes; ``channels=3`` repeats the plane for
nets that expect RGB.
"""
import functools
import importlib.util
import os

import numpy as np
from PIL import Image

DIGITS_CLASSES = tuple(str(i) for i in range(10))


def _read_raw():
    """(1797, 8, 8) pixel counts 0..16 and (1797,) labels, from scikit-learn's bundled file.

    The CSV is read directly (importing sklearn.datasets takes seconds); if the file is not where
    scikit-learn keeps it, ``sklearn.datasets.load_digits`` is used.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn")
    for folder in spec.submodule_search_locations or []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            raw = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return raw[:, :64].reshape(-1, 8, 8), raw[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _load(size):
    raw, targets = _read_raw()
    images = raw / 16.0                                       # (1797, 8, 8) in [0, 1]
    if size != 8:
        images = np.stack([np.asarray(Image.fromarray(im, mode="F").resize((size, size), Image.BILINEAR))
                           for im in images])
    images = np.clip(images, 0.0, 1.0).astype(np.float32)
    images.setflags(write=False)
    targets.setflags(write=False)
    return images, targets


def split_indices(targets, test_fraction=0.2, seed=0):
    """A stratified train/test split: per class, a seeded permutation, the first share is test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Digits:
    """Handwritten digits, served as float32 (channels, size, size) arrays in [0, 1] with labels 0-9.

    ``train=True`` gives the 1,438 training images, ``False`` the 359 test images (fixed split).
    ``transform`` receives the array.
    """

    classes = DIGITS_CLASSES

    def __init__(self, train=True, transform=None, channels=1, size=32, test_fraction=0.2, split_seed=0):
        if channels not in (1, 3):
            raise ValueError(f"Digits: channels must be 1 or 3, got {channels}")
        images, targets = _load(int(size))
        tr, te = split_indices(targets, test_fraction, split_seed)
        idx = tr if train else te
        data = images[idx][:, None]
        if channels == 3:
            data = np.repeat(data, 3, axis=1)
        self.data = np.ascontiguousarray(data)          # (N, C, size, size) float32
        self.targets = np.asarray(targets[idx])           # (N,) int64
        self.train, self.transform, self.channels = train, transform, channels

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        x = self.data[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    def __repr__(self):
        return f"Digits({'train' if self.train else 'test'}, {len(self)} images of {self.data.shape[1:]})"
