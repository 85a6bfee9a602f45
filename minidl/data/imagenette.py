"""Imagenette (fast.ai): 10 easy ImageNet classes, as an ImageFolder with ``train/`` and ``val/``.

The 160 px version (shorter side 160; 9,469 training and 3,925 validation JPEGs, about 100 MB) is
downloaded once into minidl's cache (``$MINIDL_HOME/data``, default ``~/.cache/minidl/data``) and its
MD5 checked against the one torchvision's ``Imagenette`` data set publishes.
"""
import os

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
IMAGENETTE_MD5 = "e793b78cc4c9e9a4ccc0c1155377a412"   # torchvision.datasets.Imagenette, "160px"
FOLDER = "imagenette2-160"

# the class folders (WordNet ids, sorted as ImageFolder sorts them) and their names
WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
         "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")
IMAGENETTE_CLASSES = ("tench", "English springer", "cassette player", "chain saw", "church",
                      "French horn", "garbage truck", "gas pump", "golf ball", "parachute")


def _complete(folder):
    return all(os.path.isdir(os.path.join(folder, split, w)) for split in ("train", "val") for w in WNIDS)


def download_imagenette(root=None, progress=None, md5=IMAGENETTE_MD5, log=None):
    """The ``imagenette2-160`` folder (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) in ``root``
    (default minidl's cache), downloaded and unpacked the first time."""
    from minidl import hub
    return hub.fetch_dataset(IMAGENETTE_URL, md5, FOLDER, root=root, progress=progress, log=log, check=_complete)
