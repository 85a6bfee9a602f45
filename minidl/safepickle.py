"""Reading pickles without running them: an Unpickler that builds only what a data file may hold.

``pickle.load`` calls whatever global a file names (``os.system`` included), so a downloaded
file must never reach it. ``RestrictedUnpickler`` resolves a global only through a table
``{(module, name): replacement}`` given by the caller (for a PyTorch checkpoint: tensors,
storages, OrderedDict; for a CIFAR batch: NumPy arrays), and refuses every other one with
``UnsafePickleError`` naming the file and the global — before anything is called.

NumPy arrays pickled by NumPy (``numpy.core.multiarray._reconstruct`` + ``BUILD``) are rebuilt by
``NUMPY_GLOBALS`` from the raw bytes with ``np.frombuffer``; no NumPy code is called on the
pickle's objects. Plain containers and scalars (dict, list, tuple, str, bytes, int, float, bool,
None) are built by the pickle opcodes themselves and need no global.
"""
import collections
import pickle

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global this reader does not allow (nothing from the file has been run)."""


def _load_build(self):
    """BUILD (set an object's state) only on the placeholders that expect it; an OrderedDict's
    attributes (torch's ``_metadata``: module versions) are dropped. Any other target is refused:
    setting attributes on the allowed classes or functions would change them for later files."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if type(inst) in (_Array, _DType):
        inst.__setstate__(state)
    elif type(inst) is collections.OrderedDict and isinstance(state, dict):
        pass
    else:
        raise UnsafePickleError(f"{self._path}: refusing to set the state of a {type(inst).__name__} in "
                                f"{self._what}; nothing from the file was run")


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler whose ``find_class`` only looks up ``allowed`` and whose BUILD only fills in
    NumPy placeholders (see ``_load_build``).

    It is the pure-Python unpickler (``pickle._Unpickler``) because its opcode table can be
    changed; the files it reads hold a few large byte strings, so speed is not at stake.
    allowed: {(module, name): object to use instead}; path: the file, for error messages;
    persistent_load: callable for persistent ids (None: a file with one is refused);
    what / allows: "a CIFAR-10 batch" / "dicts, lists, ... and NumPy arrays", for the message.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, file, path, allowed, persistent_load=None, what="this file", allows=None, **kwargs):
        super().__init__(file, **kwargs)
        self._path, self._allowed, self._what = path, allowed, what
        self._allows = allows or describe(allowed)
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            pass
        raise UnsafePickleError(
            f"{self._path}: refusing to unpickle the global {module}.{name}: {self._what} holds only "
            f"{self._allows}; nothing from the file was run")

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafePickleError(f"{self._path}: unexpected persistent id {pid!r} in {self._what}")
        return self._persistent(pid)


def describe(allowed):
    """'plain containers and a, b, c' for error messages."""
    names = sorted({f"{m}.{n}" for m, n in allowed})
    return "plain containers (dict, list, str, bytes, numbers)" + (f" and {', '.join(names)}" if names else "")


def load(file, path, allowed=None, encoding="ASCII", what="this file", allows=None):
    """Unpickle one object from the open binary ``file`` allowing only ``allowed`` globals,
    then replace the NumPy placeholders by arrays (see ``finish``)."""
    obj = RestrictedUnpickler(file, path, allowed or {}, encoding=encoding, what=what, allows=allows).load()
    return finish(obj)


# ---- NumPy arrays as NumPy pickles them --------------------------------------------------------

# the plain numeric dtypes an array in a data file may have (no objects, no structured records)
_DTYPE_KINDS = "biuf"


class _DType:
    """Stands for ``numpy.dtype(code, align, copy)`` until its state gives the byte order."""

    def __init__(self, code, align=False, copy=True):
        if isinstance(code, bytes):
            code = code.decode("ascii")
        if not isinstance(code, str):
            raise pickle.UnpicklingError(f"dtype code must be a string, got {type(code).__name__}")
        dt = np.dtype(code)
        if dt.kind not in _DTYPE_KINDS or dt.fields is not None:
            raise pickle.UnpicklingError(f"array dtype {code!r} is not a plain number type")
        self.dtype = dt

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        order = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        if any(s is not None for s in state[2:5]):
            raise pickle.UnpicklingError("structured or sub-array dtypes are not accepted")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """Stands for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` until its state
    (version, shape, dtype, fortran order, raw bytes) arrives; ``finish`` swaps in the array."""

    def __init__(self, cls=None, shape=None, typecode=None):
        self.array = None

    def __setstate__(self, state):
        if len(state) == 5:
            _, shape, dtype, fortran, raw = state
        else:
            shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DType):
            raise pickle.UnpicklingError("array state without a dtype")
        if isinstance(raw, str):  # Python 2 pickles read with encoding="latin1"
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError(f"array data must be bytes, got {type(raw).__name__}")
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise pickle.UnpicklingError(f"negative array shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(f"array of shape {shape} and dtype {dtype.dtype} needs "
                                         f"{count * dtype.dtype.itemsize} bytes, the file has {len(raw)}")
        flat = np.frombuffer(raw, dtype=dtype.dtype).copy()
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _frombuffer(buf, dtype, shape, order="C"):
    """``numpy._core.numeric._frombuffer``: how NumPy pickles an array at protocol 5."""
    arr = _Array()
    arr.__setstate__((shape, dtype, order == "F", bytes(buf)))
    return arr


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode(str, 'latin1')``: how Python 3 pickles bytes at protocol 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is accepted only as (str, 'latin1')")
    return text.encode("latin1")


def _ndarray_marker(*args):
    raise pickle.UnpicklingError("numpy.ndarray may appear only as the argument of _reconstruct")


NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _ndarray_marker,
    ("numpy", "dtype"): _DType,
    ("_codecs", "encode"): _latin1_encode,
}


def finish(obj):
    """Replace the ``_Array`` placeholders in nested dicts/lists/tuples by their arrays."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise pickle.UnpicklingError("array without data")
        return obj.array
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = finish(obj[k])
        return obj
    if isinstance(obj, list):
        obj[:] = [finish(v) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(finish(v) for v in obj)
    return obj
