"""ImageFolder: the ImageNet directory layout ``root/<class name>/<image file>``, decoded with Pillow."""
import os
import threading
import warnings

import numpy as np
from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class SkipSample(Exception):
    """Raised by a data set for a sample that cannot be read; the DataLoader leaves it out of the batch."""

    def __init__(self, index, path, reason):
        super().__init__(f"cannot read sample {index} ({path}): {reason}")
        self.index, self.path, self.reason = index, path, reason


class CorruptImageWarning(UserWarning):
    pass


def load_rgb(path):
    """Decode an image file fully with Pillow and return it as RGB (grayscale, palette, CMYK,
    RGBA… all converted)."""
    with Image.open(path) as img:
        img.load()  # decode now: a truncated file fails here, not later in a transform
        return img.convert("RGB")


class ImageFolder:
    """Samples ``(transform(image), class index)``; classes are the sorted sub-folder names.

    Images are decoded lazily with Pillow and converted to RGB. A file that cannot be decoded is
    reported once with a ``CorruptImageWarning`` naming the path and the reason, remembered, and
    skipped: ``__getitem__`` raises ``SkipSample`` and the DataLoader leaves it out, so one bad
    JPEG never stops an epoch. ``bad_files`` maps each such path to its reason.
    """

    def __init__(self, root, transform=None, extensions=IMG_EXTENSIONS):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.transform = transform
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: no class folders in {self.root} "
                                    f"(expected {self.root}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = []
        for c in self.classes:
            for dirpath, _, files in sorted(os.walk(os.path.join(self.root, c), followlinks=True)):
                for f in sorted(files):
                    if f.lower().endswith(tuple(extensions)):
                        self.samples.append((os.path.join(dirpath, f), self.class_to_idx[c]))
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no image files ({', '.join(extensions)}) under {self.root}")
        self.targets = np.array([t for _, t in self.samples], dtype=np.int64)
        self.bad_files = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        if path in self.bad_files:
            raise SkipSample(index, path, self.bad_files[path])
        try:
            img = load_rgb(path)
        except Exception as e:  # Pillow raises many types: UnidentifiedImageError, OSError, SyntaxError…
            reason = f"{type(e).__name__}: {e}"
            with self._lock:
                first = path not in self.bad_files
                self.bad_files[path] = reason
            if first:
                warnings.warn(f"ImageFolder: skipping {path}: cannot decode it ({reason})",
                              CorruptImageWarning, stacklevel=2)
            raise SkipSample(index, path, reason) from None
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def __repr__(self):
        return f"ImageFolder({self.root!r}, {len(self.classes)} classes, {len(self)} images)"
