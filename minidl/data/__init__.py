"""Data: ImageFolder (Pillow), CIFAR-10 and Imagenette (downloaded on request), the embedded digits set,
transforms and the DataLoader."""
from minidl.data import transforms  # noqa: F401
from minidl.data.folder import ImageFolder, SkipSample, CorruptImageWarning, load_rgb, IMG_EXTENSIONS  # noqa: F401
from minidl.data.cifar import CIFAR10, CIFAR10_CLASSES, download_cifar10  # noqa: F401
from minidl.data.imagenette import IMAGENETTE_CLASSES, download_imagenette  # noqa: F401
from minidl.data.digits import Digits, DIGITS_CLASSES  # noqa: F401
from minidl.data.loader import DataLoader, Subset, collate  # noqa: F401
