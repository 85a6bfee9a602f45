"""Raw-array kernels without autograd, one module per op family, three backends in each.

    conv.py (im2col, col2im, the GPU's 1x1 GEMMs)   pool.py (max, avg, adaptive avg)   lrn.py
    relu.py   batchnorm.py   sgd.py                   _geometry.py (output sizes, windows)

Each family module holds, side by side, ``reference_<op>`` (slow, obvious NumPy: what the tests
trust), ``numba_<op>`` (the CPU kernels) and ``cuda_<op>`` (CuPy launchers of the CUDA source
cuda/<family>.cu), all with one signature per op. Forward kernels return ``(y, saved)``; backward
kernels take ``(gy, saved, params)``: params is the op's fixed geometry or constants (a Window for
conv and pooling).

``kernels.of(array)`` picks the backend from the array's type -- never from a global flag -- so a
Function calls ``kernels.of(x).im2col(...)`` and runs unchanged on either device;
``kernels.get("reference" | "numba" | "cuda")`` names one. Without a working Numba the "numba"
backend serves the reference versions, after one warning.
"""
import re
import types
import warnings

from minidl import backend
from minidl.kernels import batchnorm, conv, lrn, pool, relu, sgd, _numba
from minidl.kernels._geometry import Window  # noqa: F401

FAMILIES = {"conv": conv, "pool": pool, "lrn": lrn, "relu": relu, "batchnorm": batchnorm, "sgd": sgd}
BACKENDS = ("reference", "numba", "cuda")

_backends = {}
_numba_failed = []   # the one reason Numba was given up, once known
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")   # Numba highlights its errors for a terminal (with colorama)


def numba_unavailable():
    """None while the Numba kernels are in use, else why the reference versions replaced them."""
    if _numba_failed:
        return _numba_failed[0]
    return f"Numba could not be imported ({_numba.MISSING})" if _numba.MISSING is not None else None


def _give_up_numba(reason):
    """Switch every Numba kernel to its reference version, warning once."""
    if not _numba_failed:
        _numba_failed.append(reason)
        warnings.warn(f"minidl: {reason}; the CPU kernels fall back to the slow NumPy reference versions "
                      "(reinstall numba for speed)", RuntimeWarning, stacklevel=3)


def _guarded(fast, slow):
    """fast, or slow (from then on, for every kernel) once Numba fails to compile or run."""
    def call(*args, **kwargs):
        if not _numba_failed:
            try:
                return fast(*args, **kwargs)
            except _numba.ERRORS as e:
                first = _ESCAPES.sub("", str(e)).splitlines()[0]
                _give_up_numba(f"Numba failed in {fast.__name__} ({type(e).__name__}: {first})")
        return slow(*args, **kwargs)
    call.__name__, call.__doc__ = fast.__name__, fast.__doc__
    return call


def get(name):
    """The namespace of every op of every family for backend ``name`` ("reference", "numba" or "cuda")."""
    if name not in _backends:
        if name not in BACKENDS:
            raise ValueError(f"minidl.kernels: unknown backend {name!r}, expected one of {BACKENDS}")
        if name == "numba" and _numba.MISSING is not None:
            _give_up_numba(numba_unavailable())
        ns = types.SimpleNamespace(name=name)
        for family in FAMILIES.values():
            for op in family.OPS:
                fn = getattr(family, f"{name}_{op}")
                if name == "numba":
                    fn = _guarded(fn, getattr(family, f"reference_{op}"))
                setattr(ns, op, fn)
        _backends[name] = ns
    return _backends[name]


def of(array):
    """The kernels for ``array``: the CUDA ones for cupy arrays, else the Numba ones."""
    return get("cuda" if backend._is_cupy_array(array) else "numba")


def compile_all():
    """Compile every CUDA kernel of every family for both dtypes now (a clear error up front)."""
    from minidl.kernels import _cuda
    _cuda.compile_all(FAMILIES)
