"""The CUDA side of the kernels: each family's source ``cuda/<family>.cu`` (after ``cuda/common.cuh``)
compiled by NVRTC once, on first use, into one CuPy RawModule per family, for float32 and float64.

Every ``__global__`` template in a .cu file is a kernel of that family (found by name in the
source, so a new kernel needs no list kept here). CuPy is imported lazily, through
minidl.backend, the first time a launcher runs; the emulated-CUDA tests put a stand-in here.
"""
import functools
import os
import re

import numpy as np

THREADS = 256
MAX_BLOCKS = 1 << 20    # grid-stride loops cover the rest
MAX_GRID_Y = 65535
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")
_KERNEL = re.compile(r"__global__\s+void\s+(\w+)\s*\(")

cp = None  # the cupy module, set on first use (or by a test's stand-in)


def cupy():
    global cp
    if cp is None:
        from minidl import backend
        cp = backend.cupy()
    return cp


@functools.lru_cache(maxsize=None)
def source(family):
    """The CUDA C++ of a family: common.cuh followed by <family>.cu."""
    with open(os.path.join(FOLDER, "common.cuh")) as f:
        common = f.read()
    with open(os.path.join(FOLDER, f"{family}.cu")) as f:
        return common + "\n" + f.read()


def kernel_names(family):
    return tuple(_KERNEL.findall(source(family)))


_modules = {}   # family -> RawModule, built by the cupy in use (cleared when a test swaps cupy)


def _module(family):
    mod = _modules.get((family, id(cupy())))
    if mod is None:
        names = [f"{k}<{t}>" for k in kernel_names(family) for t in CTYPES.values()]
        mod = _modules[(family, id(cp))] = cp.RawModule(code=source(family), options=("--std=c++14",),
                                                        name_expressions=names)
    return mod


def kernel(family, name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in CTYPES:
        raise TypeError(f"{name}: GPU kernels support float32 and float64, got {dtype}")
    return _module(family).get_function(f"{name}<{CTYPES[dtype]}>")


def blocks_for(total):
    return int(max(1, min((total + THREADS - 1) // THREADS, MAX_BLOCKS)))


def launch(family, name, dtype, total, args, grid_y=1, blocks=None):
    """Run kernel ``name`` of ``family`` over ``total`` items (grid-stride), THREADS threads a block."""
    if total <= 0:
        return
    blocks = blocks_for(total) if blocks is None else blocks
    kernel(family, name, dtype)((blocks, int(min(max(grid_y, 1), MAX_GRID_Y)), 1), (THREADS, 1, 1), args)


def i32(*values):
    return tuple(np.int32(v) for v in values)


def window_args(w):
    """The int32 arguments (H, W, kh, kw, sh, sw, ph, pw, oh, ow) of a Window, in the kernels' order."""
    return i32(w.h, w.w, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow)


def contiguous(a):
    return cupy().ascontiguousarray(a)


def check_out(op, out, shape, dtype):
    """``out`` if it is a C-contiguous array of ``shape`` and ``dtype``, else a ValueError naming ``op``."""
    shape = tuple(int(s) for s in shape)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be a C-contiguous {np.dtype(dtype)} array of shape {shape}, "
                         f"got {out.dtype} {out.shape} (contiguous: {out.flags.c_contiguous})")
    return out


def compile_all(families):
    """Compile every kernel of ``families`` for both dtypes now (a clear error up front, not at first use)."""
    for family in families:
        for name in kernel_names(family):
            for dtype in CTYPES:
                kernel(family, name, dtype)
