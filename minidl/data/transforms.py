"""Image transforms for training and testing ConvNets, as in the ILSVRC papers.

Each transform is a callable object. Geometric ones (Resize, CenterCrop, RandomCrop, Pad,
RandomResizedCrop, RandomHorizontalFlip, TenCrop) accept a Pillow image or a float array laid
out (C, H, W); ``ToArray`` turns Pillow images into float32 (C, H, W) arrays in [0, 1];
``Normalize`` and ``PCALighting`` work on such arrays (any leading axes, channels at axis -3).

A typical ImageNet pipeline::

    train = Compose([RandomResizedCrop(224), RandomHorizontalFlip(), ToArray(),
                     PCALighting(0.1), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    test  = Compose([Resize(256), CenterCrop(224), ToArray(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ten   = Compose([Resize(256), TenCrop(224), ToArray(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])

Randomness: every random draw comes from ``generator()``: the per-sample generator the
DataLoader installs while it loads a sample (seeded from the loader's seed, the epoch and the
sample's index, so the result does not depend on threads or worker count), or, outside a loader,
minidl's global generator (``minidl.manual_seed``).
"""
import contextlib
import math
import numbers
import threading

import numpy as np
from PIL import Image, ImageOps

from minidl import random

# Per-channel statistics of the ImageNet training set (RGB, pixel values in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Principal components of ImageNet's RGB pixel covariance (pixels in [0, 1]): eigenvalues and
# eigenvectors (one eigenvector per column), for the AlexNet paper's "fancy PCA" lighting noise.
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float64)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], dtype=np.float64)

_local = threading.local()


def generator():
    """The numpy Generator random transforms draw from in this thread (see the module docstring)."""
    g = getattr(_local, "rng", None)
    return g if g is not None else random.generator()


@contextlib.contextmanager
def using_generator(gen):
    """Within the block, random transforms in this thread draw from ``gen``."""
    previous = getattr(_local, "rng", None)
    _local.rng = gen
    try:
        yield gen
    finally:
        _local.rng = previous


# ---- helpers that treat Pillow images and (C, H, W) arrays alike -------------------------------
def _is_pil(img):
    return isinstance(img, Image.Image)


def _check_image(op, img):
    if _is_pil(img):
        return
    if isinstance(img, np.ndarray) and img.ndim >= 2:
        return
    raise TypeError(f"{op}: expected a Pillow image or an array (C, H, W), got {type(img).__name__}"
                    + (f" with shape {img.shape}" if isinstance(img, np.ndarray) else ""))


def image_size(img):
    """(height, width) of a Pillow image or of an array (..., H, W)."""
    if _is_pil(img):
        return img.height, img.width
    return tuple(img.shape[-2:])


def _pair(size, op):
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    if len(size) != 2:
        raise ValueError(f"{op}: size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def crop(img, top, left, height, width):
    if _is_pil(img):
        return img.crop((left, top, left + width, top + height))
    return img[..., top:top + height, left:left + width]


def hflip(img):
    if _is_pil(img):
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.ascontiguousarray(img[..., ::-1])


def resize(img, size):
    """Bilinear resize to ``size`` = (height, width)."""
    h, w = size
    if _is_pil(img):
        return img.resize((w, h), Image.BILINEAR)
    lead = img.shape[:-2]
    planes = np.asarray(img, dtype=np.float32).reshape((-1,) + img.shape[-2:])
    out = np.stack([np.asarray(Image.fromarray(p, mode="F").resize((w, h), Image.BILINEAR))
                    for p in planes])
    return out.reshape(lead + (h, w)).astype(img.dtype if img.dtype.kind == "f" else np.float32)


def pad(img, padding, fill=0):
    if padding == 0:
        return img
    if _is_pil(img):
        return ImageOps.expand(img, border=padding, fill=fill)
    widths = [(0, 0)] * (img.ndim - 2) + [(padding, padding), (padding, padding)]
    return np.pad(img, widths, mode="constant", constant_values=fill)


# ---- transforms --------------------------------------------------------------------------------
class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class Resize:
    """Resize: an int makes the shorter side that long (aspect kept, as the AlexNet/VGG papers
    rescale before cropping); (height, width) resizes to exactly that."""

    def __init__(self, size):
        self.size = size

    def __call__(self, img):
        _check_image("Resize", img)
        h, w = image_size(img)
        if isinstance(self.size, numbers.Integral):
            s = int(self.size)
            if h <= w:
                target = (s, max(1, int(round(s * w / h))))
            else:
                target = (max(1, int(round(s * h / w))), s)
        else:
            target = _pair(self.size, "Resize")
        if target == (h, w):
            return img
        return resize(img, target)

    def __repr__(self):
        return f"Resize({self.size})"


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img):
        _check_image("CenterCrop", img)
        h, w = image_size(img)
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"CenterCrop: crop {th}x{tw} is larger than the image {h}x{w}; "
                             f"Resize first")
        return crop(img, int(round((h - th) / 2)), int(round((w - tw) / 2)), th, tw)

    def __repr__(self):
        return f"CenterCrop({self.size})"


class Pad:
    """Pad every side with ``padding`` pixels of value ``fill``."""

    def __init__(self, padding, fill=0):
        self.padding, self.fill = int(padding), fill

    def __call__(self, img):
        _check_image("Pad", img)
        return pad(img, self.padding, self.fill)

    def __repr__(self):
        return f"Pad({self.padding})"


class RandomCrop:
    """A crop at a uniformly random position, after optional zero padding on every side
    (the CIFAR recipe: RandomCrop(32, padding=4))."""

    def __init__(self, size, padding=0, fill=0):
        self.size, self.padding, self.fill = _pair(size, "RandomCrop"), int(padding), fill

    def __call__(self, img):
        _check_image("RandomCrop", img)
        img = pad(img, self.padding, self.fill)
        h, w = image_size(img)
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: crop {th}x{tw} is larger than the (padded) image {h}x{w}")
        g = generator()
        top = int(g.integers(0, h - th + 1))
        left = int(g.integers(0, w - tw + 1))
        return crop(img, top, left, th, tw)

    def __repr__(self):
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomResizedCrop:
    """A crop of random area (``scale`` of the image) and aspect ratio (``ratio``, drawn
    log-uniformly), resized to ``size`` — GoogLeNet's scale augmentation. After ten failed draws
    it falls back to the largest central crop with an allowed aspect ratio."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size = _pair(size, "RandomResizedCrop")
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def params(self, h, w):
        g = generator()
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * g.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(g.uniform(log_lo, log_hi))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(g.integers(0, h - ch + 1)), int(g.integers(0, w - cw + 1)), ch, cw
        aspect = w / h
        if aspect < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif aspect > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            ch, cw = h, w
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img):
        _check_image("RandomResizedCrop", img)
        top, left, ch, cw = self.params(*image_size(img))
        return resize(crop(img, top, left, ch, cw), self.size)

    def __repr__(self):
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        _check_image("RandomHorizontalFlip", img)
        return hflip(img) if generator().random() < self.p else img

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class TenCrop:
    """The AlexNet/ZF test protocol: the four corner crops and the centre crop, and the
    horizontal mirrors of those five. Returns a list of ten Pillow images, or for an array input
    one array (10, C, h, w). Predictions are averaged over the ten (``metrics.evaluate``).
    ``mirror=False`` leaves the mirrors out (five views: for data trained without flips, such
    as digits, whose mirror images are other symbols)."""

    def __init__(self, size, mirror=True):
        self.size, self.mirror = _pair(size, "TenCrop"), bool(mirror)

    def __call__(self, img):
        _check_image("TenCrop", img)
        h, w = image_size(img)
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"TenCrop: crop {th}x{tw} is larger than the image {h}x{w}; Resize first")
        positions = [(0, 0), (0, w - tw), (h - th, 0), (h - th, w - tw),
                     (int(round((h - th) / 2)), int(round((w - tw) / 2)))]
        five = [crop(img, t, l, th, tw) for t, l in positions]
        ten = five + [hflip(c) for c in five] if self.mirror else five
        if _is_pil(img):
            return ten
        return np.stack(ten)

    def __repr__(self):
        return f"TenCrop({self.size}{'' if self.mirror else ', mirror=False'})"


class ToArray:
    """Pillow image -> float32 array (C, H, W) in [0, 1] (a list of images -> (N, C, H, W));
    arrays pass through as float32."""

    def __call__(self, img):
        if isinstance(img, (list, tuple)):
            return np.stack([self(i) for i in img])
        if _is_pil(img):
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            a = np.asarray(img, dtype=np.float32) / 255.0
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            return np.ascontiguousarray(a)
        if isinstance(img, np.ndarray):
            return np.asarray(img, dtype=np.float32)
        raise TypeError(f"ToArray: expected a Pillow image, a list of them or an array, got {type(img).__name__}")

    def __repr__(self):
        return "ToArray()"


def _channel_array(img, op):
    if not isinstance(img, np.ndarray) or img.ndim < 3:
        raise TypeError(f"{op}: expected a float array (..., C, H, W) (put ToArray() first), got "
                        + (f"shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__))
    return img


class Normalize:
    """(x - mean) / std per channel, on float arrays (..., C, H, W)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {std}")

    def __call__(self, img):
        img = _channel_array(img, "Normalize")
        c = img.shape[-3]
        if len(self.mean) not in (1, c):
            raise ValueError(f"Normalize: {len(self.mean)} channel means for an image with {c} channels")
        return ((img - self.mean) / self.std).astype(np.float32)

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class PCALighting:
    """The AlexNet paper's colour augmentation ("fancy PCA"): add to every pixel
    ``eigvec @ (alpha * eigval)`` with ``alpha ~ N(0, alphastd)`` drawn once per image, so the
    image's colour/intensity shifts along the principal components of natural RGB pixel values
    while its shape is unchanged. Use on RGB arrays in [0, 1] (before Normalize)."""

    def __init__(self, alphastd=0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC):
        self.alphastd = float(alphastd)
        self.eigval = np.asarray(eigval, dtype=np.float64)
        self.eigvec = np.asarray(eigvec, dtype=np.float64)

    def __call__(self, img):
        img = _channel_array(img, "PCALighting")
        if img.shape[-3] != 3:
            raise ValueError(f"PCALighting: needs 3 (RGB) channels, got {img.shape[-3]}")
        if self.alphastd == 0:
            return img
        alpha = generator().normal(0.0, self.alphastd, size=3)
        rgb = self.eigvec @ (alpha * self.eigval)
        return (img + rgb.astype(np.float32).reshape(3, 1, 1)).astype(np.float32)

    def __repr__(self):
        return f"PCALighting(alphastd={self.alphastd})"


Lighting = PCALighting
