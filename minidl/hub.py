"""torchvision's pretrained ImageNet weights and other downloads, without PyTorch.

    net = models.resnet18(pretrained=True)      # finds or downloads resnet18-f37072fd.pth
    path = hub.weights_file("alexnet_torchvision")

Where a weights file is looked for, in order:
  1. PyTorch's own cache, ``$TORCH_HOME/hub/checkpoints`` (default ``$XDG_CACHE_HOME/torch``, i.e.
     ``~/.cache/torch/hub/checkpoints``) — weights a torchvision user already has are reused;
  2. minidl's cache, ``$MINIDL_HOME/checkpoints`` (default ``~/.cache/minidl/checkpoints``);
  3. otherwise it is downloaded from ``https://download.pytorch.org/models/<file>`` (the base is
     overridden by ``$MINIDL_WEIGHTS_URL``) into minidl's cache.

A download goes to a temporary file in the destination folder, is checked — the SHA-256 prefix
torchvision puts in the file name (``resnet18-f37072fd.pth``: the digest starts ``f37072fd``), or an
MD5 for the data sets — and only then renamed into place. A truncated or mismatching transfer is
deleted and the error names the URL and the path. A file already in a cache is used as it is (not
hashed again: it was checked when it was downloaded).
"""
import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request

TORCHVISION_URL = "https://download.pytorch.org/models/"
WEIGHTS_URL_ENV = "MINIDL_WEIGHTS_URL"

# minidl model name -> torchvision's file for it (torchvision's IMAGENET1K_V1 weights, as listed in
# torchvision/models/*.py), and older names of the same weights a PyTorch cache may hold instead.
WEIGHTS = {
    "alexnet_torchvision": "alexnet-owt-7be5be79.pth",
    "vgg11": "vgg11-8a719046.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth",
    "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19_bn": "vgg19_bn-c79401a0.pth",
    "googlenet_torchvision": "googlenet-1378be20.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}
OLDER_NAMES = {
    "alexnet_torchvision": ("alexnet-owt-4df8aa71.pth",),
    "vgg11": ("vgg11-bbd30ac9.pth",),
    "vgg13": ("vgg13-c768596a.pth",),
    "resnet18": ("resnet18-5c106cde.pth",),
    "resnet34": ("resnet34-333f7ec4.pth",),
    "resnet50": ("resnet50-19c8e357.pth",),
    "resnet101": ("resnet101-5d3b4d8f.pth",),
    "resnet152": ("resnet152-b121ed2d.pth",),
}
HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed or did not verify; nothing was kept (the message says URL and path)."""


def torch_checkpoint_dir():
    """PyTorch's cache of downloaded weights: $TORCH_HOME/hub/checkpoints."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def cache_dir(*parts):
    """minidl's cache folder ($MINIDL_HOME, default ~/.cache/minidl), joined with ``parts``."""
    home = os.environ.get("MINIDL_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "minidl")
    return os.path.join(os.path.expanduser(home), *parts)


def _progress_bar(total, desc, progress):
    """A tqdm bar on stderr (None when progress is False; tqdm hides it when stderr is no terminal)."""
    if progress is False:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=None if progress is None else False, file=sys.stderr, leave=False)


def download(url, path, sha256_prefix=None, md5=None, progress=None, timeout=60, log=None):
    """Download ``url`` to ``path`` (atomically) and verify it; returns ``path``.

    sha256_prefix / md5: the expected digest (a prefix for SHA-256, as torchvision's names carry).
    A short transfer (fewer bytes than Content-Length), a network error or a wrong digest raise
    DownloadError naming the URL and ``path``, and leave no file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    sha = hashlib.sha256() if sha256_prefix else None
    md5sum = hashlib.md5() if md5 else None
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
    kept = False
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = resp.headers.get("Content-Length")
                    total = int(total) if total and total.isdigit() else None
                    size = f" ({total / 2**20:.1f} MB)" if total else ""
                    log(f"downloading {url}{size} to {path}")
                    bar = _progress_bar(total, os.path.basename(path), progress)
                    got = 0
                    try:
                        while True:
                            chunk = resp.read(CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            got += len(chunk)
                            for h in (sha, md5sum):
                                if h is not None:
                                    h.update(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                    finally:
                        if bar is not None:
                            bar.close()
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else \
                    f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                raise DownloadError(f"download of {url} failed ({reason}); "
                                    f"nothing was kept at {path}") from None
            except Exception as e:  # http.client.HTTPException (IncompleteRead, RemoteDisconnected...)
                raise DownloadError(f"download of {url} broke off ({type(e).__name__}: {e}); "
                                    f"nothing was kept at {path}") from None
        if total is not None and got != total:
            raise DownloadError(f"download of {url} is truncated: {got} of {total} bytes; "
                                f"the partial file was deleted, nothing was kept at {path}")
        if sha is not None and not sha.hexdigest().startswith(sha256_prefix):
            raise DownloadError(f"download of {url} has the wrong checksum: SHA-256 {sha.hexdigest()}, expected "
                                f"it to start with {sha256_prefix}; the file was deleted, nothing was kept at {path}")
        if md5sum is not None and md5sum.hexdigest() != md5:
            raise DownloadError(f"download of {url} has the wrong checksum: MD5 {md5sum.hexdigest()}, expected "
                                f"{md5}; the file was deleted, nothing was kept at {path}")
        os.replace(tmp, path)
        kept = True
    finally:
        if not kept and os.path.exists(tmp):
            os.remove(tmp)
    return path


def find_cached(name):
    """The path of model ``name``'s weights in PyTorch's or minidl's cache, or None."""
    if name not in WEIGHTS:
        raise ValueError(f"no pretrained weights for {name!r}; minidl knows torchvision's for: {', '.join(WEIGHTS)}")
    for folder in (torch_checkpoint_dir(), cache_dir("checkpoints")):
        for file in (WEIGHTS[name],) + OLDER_NAMES.get(name, ()):
            p = os.path.join(folder, file)
            if os.path.isfile(p):
                return p
    return None


def weights_url(name, base_url=None):
    base = base_url or os.environ.get(WEIGHTS_URL_ENV) or TORCHVISION_URL
    return base.rstrip("/") + "/" + WEIGHTS[name]


def weights_file(name, download_missing=True, progress=None, base_url=None, log=None):
    """The local path of torchvision's weights for model ``name`` (see the module docstring)."""
    found = find_cached(name)
    if found is not None:
        return found
    file = WEIGHTS[name]
    dest = os.path.join(cache_dir("checkpoints"), file)
    url = weights_url(name, base_url)
    if not download_missing:
        raise FileNotFoundError(f"no {file} in {torch_checkpoint_dir()} or {cache_dir('checkpoints')}; "
                                f"download it from {url}")
    match = HASH_IN_NAME.search(file)
    return download(url, dest, sha256_prefix=match.group(1) if match else None, progress=progress, log=log)


def load_pretrained(model, name, progress=None, base_url=None):
    """Load torchvision's ImageNet weights for ``name`` into ``model`` (1000 classes); returns it."""
    from minidl import pth
    path = weights_file(name, progress=progress, base_url=base_url)
    try:
        state = pth.load_state_dict(path)
    except pth.PthError as e:
        raise pth.PthError(f"{e} (delete the file to download it again)") from None
    try:
        return model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: does not fit {name}: {e}") from None


def check_pretrained(name, pretrained, num_classes):
    """Constructors' argument check: True only with 1000 classes and a model that has weights."""
    if not pretrained:
        return False
    if name not in WEIGHTS:
        raise ValueError(f"{name}: no published pretrained weights; those exist for: {', '.join(WEIGHTS)}")
    if num_classes != 1000:
        raise ValueError(f"{name}: pretrained=True gives torchvision's 1000-class ImageNet weights; "
                         f"got num_classes={num_classes} (load them, then replace the last layer)")
    return True


def extract_tar(archive, root, top):
    """Unpack ``archive`` (a .tar.gz) into ``root``, where it must create the single folder ``top``.

    Every member must be a plain file or folder under ``top/`` (no links, devices, absolute paths or
    ``..``), checked before anything is written; the files go to a temporary folder first, renamed
    to ``root/top`` only when all are out — an interrupted unpacking leaves no half folder.
    Returns ``root/top``.
    """
    import shutil
    import tarfile
    dest = os.path.join(root, top)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=root, prefix=f".{top}.", suffix=".part")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = m.name.replace("\\", "/").split("/")
                if (m.name.startswith("/") or ".." in parts or parts[0] != top
                        or not (m.isfile() or m.isdir())):
                    raise ValueError(f"{archive}: refusing to unpack member {m.name!r} (expected plain files "
                                     f"under {top}/)")
            for m in members:
                m.mode = (m.mode | 0o600) & 0o755 if m.isfile() else 0o755
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(tmp, top), dest)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: cannot unpack ({type(e).__name__}: {e}); delete it to download again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


DATA_URL_ENV = "MINIDL_DATA_URL"


def fetch_dataset(url, md5, top, root=None, check=None, progress=None, log=None):
    """A data set folder ``root/top`` (root: ``cache_dir("data")``), downloaded and unpacked once.

    url: the published archive (``$MINIDL_DATA_URL`` replaces everything before its file name);
    md5: its published checksum; check(folder) -> bool says whether an unpacked copy is complete.
    """
    root = os.fspath(root) if root is not None else cache_dir("data")
    dest = os.path.join(root, top)
    if os.path.isdir(dest) and (check is None or check(dest)):
        return dest
    name = url.rsplit("/", 1)[-1]
    base = os.environ.get(DATA_URL_ENV)
    if base:
        url = base.rstrip("/") + "/" + name
    archive = os.path.join(root, name)
    if not os.path.isfile(archive):
        download(url, archive, md5=md5, progress=progress, log=log)
    (log or (lambda m: print(m, file=sys.stderr)))(f"unpacking {archive} into {root}")
    extract_tar(archive, root, top)
    if check is not None and not check(dest):
        raise ValueError(f"{archive} did not unpack into a complete {dest}; delete both to download again")
    os.remove(archive)  # the unpacked folder is what is read; keep the cache at one copy
    return dest
