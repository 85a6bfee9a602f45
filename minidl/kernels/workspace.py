"""The convolutions' scratch memory: one bounded arena per thread, shared by im2col and Winograd.

A conv call needs large temporaries (im2col's col matrix and GEMM output; Winograd's transformed
tiles) only while it runs. Two costs pull opposite ways on the CPU:

- a fresh 30-200 MB array is handed back to the OS when freed and faulted in page by page at the
  next call, so keeping the buffer between calls is faster;
- a buffer kept per layer, or per algorithm, stays resident through the whole training step and
  adds to its peak (benchmarks/RESULTS.md, Memory).

So every conv call takes its temporaries from one arena, laid end to end, and goes through the
batch in chunks that fit ``LIMIT_BYTES``: what is kept between calls is bounded by that, however
many layers and whatever algorithm each uses (Winograd's pieces, run on blas.py's pool threads,
take small arenas of their own there). (cuDNN's "workspace" is the same idea.) CuPy's memory
pool already recycles device memory, so on the GPU each part is a plain ``empty``.

    chunks(n, bytes_per_sample, xp) -> [(start, stop), ...]    samples per chunk within the bound
    arena(xp, parts, expect=None, writer=None) -> (views, intact)
"""
import math
import threading

import numpy as np

LIMIT_BYTES = 64 * 2 ** 20      # CPU: the arena's bound (one sample may exceed it: it then gets its own chunk)
# A GPU has tens of GB and pays per kernel launch: fewer, larger chunks there.
GPU_LIMIT_BYTES = 2 * 2 ** 30
_ALIGN = 64                     # each part starts on a cache line
_local = threading.local()      # one arena per thread, so two threads never share one


def chunks(n, bytes_per_sample, xp=np):
    """Split range(n) into (start, stop) pieces of at most the bound's worth of samples (>= 1 each)."""
    limit = LIMIT_BYTES if xp is np else GPU_LIMIT_BYTES
    step = max(1, min(n, limit // max(1, bytes_per_sample)))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def arena(xp, parts, expect=None, writer=None):
    """Uninitialised C-contiguous arrays for ``parts`` [(shape, dtype), ...], not overlapping.

    Returns (views, intact). The views are valid until the next ``arena`` call on this thread.
    ``writer`` labels what the caller is about to write into the first part; ``intact`` is True
    when ``expect`` is that label of the previous call, i.e. the first part still holds what that
    writer left there (conv's backward reuses the col matrix its forward built, when no other conv
    ran in between). A call without ``writer`` marks the contents as unknown.
    """
    if xp is not np:
        return [xp.empty(shape, dtype=dtype) for shape, dtype in parts], False
    offsets, total = [], 0
    for shape, dtype in parts:
        offsets.append(total)
        total += -(-math.prod(shape) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
    buf = getattr(_local, "buffer", None)
    if buf is None or buf.size < total:
        _local.buffer = None  # free the old one before allocating the bigger one
        buf = _local.buffer = np.empty(total + _ALIGN, dtype=np.uint8)
        _local.writer = None
    base = (-buf.ctypes.data) % _ALIGN
    intact = expect is not None and getattr(_local, "writer", None) == expect
    _local.writer = writer
    views = [buf[base + o:base + o + math.prod(s) * np.dtype(d).itemsize].view(d).reshape(s)
             for o, (s, d) in zip(offsets, parts)]
    return views, intact


def nbytes():
    """Bytes this thread's arena holds now (0 when it has none)."""
    buf = getattr(_local, "buffer", None)
    return 0 if buf is None else buf.nbytes


def release():
    """Free this thread's arena; the next conv call allocates a new one."""
    _local.buffer = _local.writer = None
