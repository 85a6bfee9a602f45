"""PyTorch ``.pth`` checkpoints read with NumPy only (no PyTorch, and nothing in the file is run).

Two formats exist (``torch.save`` writes the first since PyTorch 1.6):

- zip: ``<name>/data.pkl`` (the pickled object), ``<name>/data/<key>`` (the raw bytes of each
  storage), ``<name>/byteorder`` ("little" or "big"; absent = little), ``<name>/version``.
- legacy: five pickles in a row — magic number, protocol version 1001, system info, the object,
  the list of storage keys — then each storage as an int64 element count and its raw bytes.

In the pickle a tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, hooks)``, a storage a persistent id ``("storage", torch.FloatStorage, key,
location, numel)``, and a state dict a ``collections.OrderedDict``. The unpickler here
(``minidl.safepickle``) resolves exactly those globals — each to a function that builds NumPy
arrays — and refuses any other with an error naming the file and the global.

    state = pth.load_state_dict("resnet18-f37072fd.pth")     # name -> np.ndarray
    obj = pth.load("checkpoint.pth")                          # the whole object, tensors as arrays
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np

from minidl import safepickle

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> NumPy dtype; bfloat16 has no NumPy dtype: read as uint16, widened to float32
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class PthError(ValueError):
    """A file that is not a readable PyTorch checkpoint (the message names it)."""


class _StorageType:
    """What ``torch.FloatStorage`` & co. unpickle to: the element type, nothing callable."""

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A storage named by a persistent id; ``array`` (1-D, its dtype) is filled in when read."""

    def __init__(self, key, stype, numel):
        self.key, self.stype, self.numel = key, stype, numel
        self.array = None
        self.uses = 0


class _View:
    """A legacy-format view: ``count`` elements of ``root`` from ``offset``."""

    def __init__(self, root, offset, count):
        self.root, self.offset, self.count = root, offset, count
        self.stype, self.uses = root.stype, 0

    @property
    def array(self):
        if self.root.array is None:
            return None
        return self.root.array[self.offset:self.offset + self.count]


class _Tensor:
    """A tensor to build from its storage once the storages are read (see ``_resolve``)."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _View)):
            raise pickle.UnpicklingError(f"a tensor's storage must be a persistent id, got {type(storage).__name__}")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError(f"tensor size {self.size} and stride {self.stride} differ in length")
        storage.uses += 1


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


def _decode(s):
    return s.decode("ascii") if isinstance(s, bytes) else s


class _Reader:
    """One file's persistent ids -> ``_Storage`` objects (shared by key)."""

    def __init__(self, path):
        self.path, self.storages, self.views = path, {}, {}

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or _decode(pid[0]) != "storage":
            raise PthError(f"{self.path}: unknown persistent id {pid!r} (expected a storage)")
        if len(pid) == 5:
            _, stype, key, _location, numel = pid
            view = None
        elif len(pid) == 6:
            _, stype, key, _location, numel, view = pid
        else:
            raise PthError(f"{self.path}: malformed storage id {pid!r}")
        if not isinstance(stype, _StorageType):
            raise PthError(f"{self.path}: storage of unsupported type {stype!r}")
        key = _decode(str(key) if isinstance(key, int) else key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, stype, int(numel))
        if view is None:
            return storage
        view_key, offset, count = view
        view_key = _decode(view_key)
        if view_key not in self.views:
            self.views[view_key] = _View(storage, int(offset), int(count))
        return self.views[view_key]

    def unpickle(self, file):
        return safepickle.RestrictedUnpickler(file, self.path, ALLOWED_GLOBALS, self.persistent_load,
                                              what="a PyTorch checkpoint", encoding="utf-8",
                                              allows="tensors, storages and OrderedDicts").load()


def _tensor_array(t, path):
    """The NumPy array of a ``_Tensor``: a view of its storage when it is the storage's only,
    whole, contiguous user; otherwise a copy. Bounds are checked before any strided view."""
    storage = t.storage.array
    stype = t.storage.stype
    n = int(np.prod(t.size, dtype=np.int64))
    if n == 0:
        out = np.zeros(t.size, storage.dtype)
    else:
        if t.offset < 0 or any(s < 0 for s in t.stride):
            raise PthError(f"{path}: tensor with negative offset or stride ({t.offset}, {t.stride})")
        last = t.offset + sum((d - 1) * s for d, s in zip(t.size, t.stride))
        if last >= storage.size:
            raise PthError(f"{path}: tensor of size {t.size} reaches element {last} of a storage of "
                           f"{storage.size}: the file is corrupt")
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(storage[t.offset:], shape=t.size,
                                               strides=[s * item for s in t.stride], writeable=False)
        whole = isinstance(t.storage, _Storage) and t.offset == 0 and n == storage.size and t.storage.uses == 1
        if whole and view.flags.c_contiguous and storage.flags.writeable:
            out = storage.reshape(t.size)
        else:
            out = np.array(view)
    if stype.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _resolve(obj, path):
    """Swap every ``_Tensor`` in nested dicts/lists/tuples for its NumPy array."""
    if isinstance(obj, _Tensor):
        return _tensor_array(obj, path)
    if isinstance(obj, (_Storage, _View)):
        raise PthError(f"{path}: holds a bare storage, not a tensor; minidl reads tensors only")
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], path)
        return obj
    if isinstance(obj, list):
        obj[:] = [_resolve(v, path) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve(v, path) for v in obj)
    return obj


def _read_exact(f, nbytes, path, what):
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise PthError(f"{path}: file ends inside {what} ({got} of {nbytes} bytes): truncated or corrupt")
        got += n
    return buf


def _read_member(zf, info, nbytes, path):
    """The first ``nbytes`` of a zip member. torch.save stores members uncompressed: those are read
    straight from the file into the buffer (zipfile's reader would copy them twice and CRC them)."""
    if info.compress_type != zipfile.ZIP_STORED:
        with zf.open(info) as f:
            return _read_exact(f, nbytes, path, info.filename)
    f = zf.fp
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise PthError(f"{path}: bad zip header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    f.seek(info.header_offset + 30 + name_len + extra_len)
    return _read_exact(f, nbytes, path, info.filename)


def _load_zip(path, zf):
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkls) != 1:
        raise PthError(f"{path}: a zip file but not a PyTorch checkpoint (no single data.pkl inside)")
    prefix = pkls[0][:-len("data.pkl")]
    if any(n.startswith(prefix + "code/") for n in names) or prefix + "constants.pkl" in names:
        raise PthError(f"{path}: a TorchScript archive (torch.jit.save), not a saved state dict; "
                       f"minidl reads files written by torch.save")
    order = "little"
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise PthError(f"{path}: unknown byte order {order!r}")
    reader = _Reader(path)
    with zf.open(pkls[0]) as f:
        obj = reader.unpickle(f)
    for storage in reader.storages.values():
        member = f"{prefix}data/{storage.key}"
        dtype = storage.stype.dtype.newbyteorder("<" if order == "little" else ">")
        nbytes = storage.numel * dtype.itemsize
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise PthError(f"{path}: storage {member} is missing from the archive") from None
        if info.file_size < nbytes:
            raise PthError(f"{path}: storage {member} has {info.file_size} bytes, {nbytes} expected")
        buf = _read_member(zf, info, nbytes, path)
        storage.array = np.frombuffer(buf, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    return _resolve(obj, path)


def _load_legacy(path, f):
    def header(what):
        try:
            return safepickle.load(f, path, {}, what=f"a PyTorch checkpoint's {what}")
        except safepickle.UnsafePickleError:
            if what != "magic number":
                raise
            raise PthError(f"{path}: not a PyTorch checkpoint (neither a zip file nor the legacy format)") from None
        except Exception as e:
            raise PthError(f"{path}: not a PyTorch checkpoint (cannot read its {what}: "
                           f"{type(e).__name__}: {e})") from None

    if header("magic number") != MAGIC_NUMBER:
        raise PthError(f"{path}: not a PyTorch checkpoint (neither a zip file nor the legacy format's magic number)")
    version = header("protocol version")
    if version != PROTOCOL_VERSION:
        raise PthError(f"{path}: legacy checkpoint of protocol {version}, only {PROTOCOL_VERSION} is supported")
    info = header("system info")
    little = bool(info.get("little_endian", True)) if isinstance(info, dict) else True
    reader = _Reader(path)
    obj = reader.unpickle(f)
    keys = header("storage keys")
    if not isinstance(keys, list):
        raise PthError(f"{path}: storage key list is a {type(keys).__name__}")
    for key in keys:
        key = _decode(key)
        storage = reader.storages.get(key)
        if storage is None:
            raise PthError(f"{path}: data for storage {key!r} that no tensor uses")
        (count,) = struct.unpack("<q" if little else ">q", bytes(_read_exact(f, 8, path, "a storage header")))
        if count != storage.numel:
            raise PthError(f"{path}: storage {key} has {count} elements, its tensors expect {storage.numel}")
        dtype = storage.stype.dtype.newbyteorder("<" if little else ">")
        buf = _read_exact(f, count * dtype.itemsize, path, f"storage {key}")
        storage.array = np.frombuffer(buf, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    missing = [k for k, s in reader.storages.items() if s.array is None]
    if missing:
        raise PthError(f"{path}: no data for storages {missing[:5]}: truncated or corrupt")
    return _resolve(obj, path)


def load(path):
    """The object saved in a ``.pth`` file, with every tensor as a NumPy array.

    Raises PthError (a ValueError) for a file that is not a checkpoint, and
    ``safepickle.UnsafePickleError`` for one that names any global other than torch's tensor and
    storage rebuilders and OrderedDict — in both cases naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _load_zip(path, zf)
        with open(path, "rb") as f:
            head = f.read(512)
            if len(head) >= 262 and head[257:262] == b"ustar":
                raise PthError(f"{path}: a tar-format checkpoint (PyTorch before 0.4); load it with "
                               f"torch and save it again with torch.save")
            f.seek(0)
            return _load_legacy(path, f)
    except (PthError, safepickle.UnsafePickleError):
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
            AttributeError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise PthError(f"{path}: cannot read this PyTorch checkpoint ({type(e).__name__}: {e})") from None


def state_dict(obj):
    """A loaded checkpoint -> {name: array}: the dict itself, or the one under "state_dict" or
    "model"; DataParallel's "module." prefix removed. Non-array entries raise PthError."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise PthError(f"expected a state dict (a dict of tensors), got a {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise PthError(f"state dict key {k!r} is not a string")
        if k.startswith("module."):
            k = k[len("module."):]
        if not isinstance(v, np.ndarray):
            raise PthError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


def load_state_dict(path):
    """{name: np.ndarray} from a ``.pth`` state dict (or a checkpoint dict holding one)."""
    try:
        return state_dict(load(path))
    except PthError as e:
        msg = str(e)
        raise PthError(msg if msg.startswith(os.fspath(path)) else f"{os.fspath(path)}: {msg}") from None
