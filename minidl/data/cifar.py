"""CIFAR-10 from the standard python-pickle batches (``cifar-10-batches-py``).

The batches are pickles; they are read with ``minidl.safepickle`` (dicts, lists, bytes, str,
ints and NumPy arrays only), never with ``pickle.load``, so a batch naming any other global is
refused without running it. ``download_cifar10()`` fetches and unpacks the archive into minidl's
cache (``$MINIDL_HOME``, default ``~/.cache/minidl``), checking its MD5.
"""
import os

import numpy as np
from PIL import Image

from minidl import safepickle

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"   # torchvision.datasets.CIFAR10.tgz_md5
BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def download_cifar10(root=None, progress=None, md5=CIFAR10_MD5, log=None):
    """The ``cifar-10-batches-py`` folder in ``root`` (default minidl's cache, ``~/.cache/minidl/data``),
    downloading (163 MB, MD5-checked) and unpacking the archive the first time."""
    from minidl import hub
    return hub.fetch_dataset(CIFAR10_URL, md5, "cifar-10-batches-py", root=root, progress=progress, log=log,
                             check=lambda d: all(os.path.isfile(os.path.join(d, b)) for b in BATCHES))


def _find_batches(root):
    root = os.fspath(root)
    for folder in (root, os.path.join(root, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(folder, "test_batch")):
            return folder
    raise FileNotFoundError(f"CIFAR10: no cifar-10-batches-py batches (data_batch_1..5, test_batch) in {root}; "
                            f"download and unpack {CIFAR10_URL}, or use --data cifar10 (downloads it into the cache)")


def _read_batch(path):
    try:
        with open(path, "rb") as f:
            d = safepickle.load(f, path, safepickle.NUMPY_GLOBALS, encoding="bytes",
                               what="a CIFAR-10 batch", allows="dicts, lists, bytes, str, ints and NumPy arrays")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except safepickle.UnsafePickleError as e:
        raise ValueError(f"CIFAR10: {e}") from None
    except Exception as e:
        raise ValueError(f"CIFAR10: cannot read batch {path} ({type(e).__name__}: {e})") from None
    return data, labels


class CIFAR10:
    """50,000 training or 10,000 test 32x32 RGB images in 10 classes.

    ``transform`` receives a Pillow RGB image (as for ImageFolder); without one a sample is a
    float32 array (3, 32, 32) in [0, 1]. ``root=None`` uses (and, the first time, downloads) the
    copy in minidl's cache (``download_cifar10``).
    """

    classes = CIFAR10_CLASSES

    def __init__(self, root=None, train=True, transform=None):
        folder = _find_batches(download_cifar10() if root is None else root)
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        parts = [_read_batch(os.path.join(folder, n)) for n in names if os.path.isfile(os.path.join(folder, n))]
        if train and len(parts) != 5:
            raise FileNotFoundError(f"CIFAR10: expected data_batch_1..5 in {folder}, found {len(parts)}")
        self.data = np.concatenate([p[0] for p in parts])      # (N, 3, 32, 32) uint8
        self.targets = np.concatenate([p[1] for p in parts])   # (N,) int64
        self.train, self.transform = train, transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        chw = self.data[index]
        if self.transform is None:
            return chw.astype(np.float32) / 255.0, int(self.targets[index])
        return self.transform(Image.fromarray(chw.transpose(1, 2, 0))), int(self.targets[index])

    def __repr__(self):
        return f"CIFAR10({'train' if self.train else 'test'}, {len(self)} images)"
