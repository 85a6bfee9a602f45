"""Batched matrix products on the CPU, one batch slice per thread instead of one product per call.

Winograd's GEMMs are a batch of alpha^2 (16 or 36) products of modest size, (K, C) @ (C, T) with
K, C = 64..512 and T ~ 1,600 tiles per chunk (and im2col's on the CPU one product per image, see
minidl/functional/conv.py). ``np.matmul`` hands them to BLAS one at a time, and a
multithreaded OpenBLAS splits each small product across its threads, synchronising after every one:
on the 2-core EPYC of benchmarks/RESULTS.md a (36, 64, 64) @ (36, 64, 1792) batch ran at 62 GFLOP/s
that way, and at 116 with the 36 products split into two halves, each run by one thread with BLAS
single-threaded ((128, 128, 1568): 98 -> 138). Big single products gain nothing, so only batches go
through here, and only when BLAS has threads to give.

    matmul(a, b, out=None, accumulate=False) -> a @ b  (written into, or added to, ``out``)
    parallel(fn, count) -> workers      fn(worker, i) for each piece i, whole pieces per thread

BLAS's thread count is process-wide, so while a split product runs it is 1 for every caller; one
lock makes two concurrent splits impossible (a second caller just uses ``np.matmul``), and the old
count comes back even when a product raises. Without threadpoolctl's control of the BLAS (or with
one BLAS thread, or on the GPU) this is ``xp.matmul``.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minidl import backend

MIN_FLOPS = 2e7   # below this a batch is too small to pay for the hand-off (~50 us) to another thread

_lock = threading.Lock()
_pool = None          # ThreadPoolExecutor, created at first use
_pool_size = 0
_controllers = None   # threadpoolctl's BLAS controllers, found at first use (() when none)


def _blas():
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController
            _controllers = tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # no threadpoolctl, or it cannot read this BLAS: no split
            _controllers = ()
    return _controllers


def _forget_pool():
    """After a fork the child has the pool object but none of its threads."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _splittable(a, b, out):
    """The number of batch items on axis 0 when a, b and out share it, else 0."""
    if a.ndim < 3 or b.ndim != a.ndim or a.shape[0] != b.shape[0] or a.shape[0] < 2:
        return 0
    if out is not None and (out.ndim != a.ndim or out.shape[0] != a.shape[0]):
        return 0
    return a.shape[0]


def _run(a, b, out, accumulate, lo, hi):
    if accumulate:
        out[lo:hi] += np.matmul(a[lo:hi], b[lo:hi])
    else:
        np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi])


def matmul(a, b, out=None, accumulate=False):
    """a (B, ..., M, K) @ b (B, ..., K, N) -> (B, ..., M, N); into ``out`` (added to it if ``accumulate``).

    Returns ``out`` (a new array when None). Any other broadcasting is plain ``xp.matmul``.
    """
    xp = np if isinstance(a, np.ndarray) else backend.xp_of(a)   # CuPy: cuBLAS batches on its own
    if out is None:
        if accumulate:
            raise ValueError("blas.matmul: accumulate=True needs an out array to add to")
        if xp is not np:
            return xp.matmul(a, b)
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                       dtype=np.result_type(a, b))
    if xp is np and _split(a, b, out, accumulate):
        return out
    if accumulate:
        out += xp.matmul(a, b)
    else:
        xp.matmul(a, b, out=out)
    return out


def _split(a, b, out, accumulate):
    """Run the product as one share of the batch per BLAS thread; False (nothing done) where it does not pay."""
    items = _splittable(a, b, out)
    if not items or 2.0 * a.size * b.shape[-1] < MIN_FLOPS:
        return False

    def share(k, workers):
        _run(a, b, out, accumulate, items * k // workers, items * (k + 1) // workers)
    return _fan_out(items, share) > 0


def parallel(fn, count):
    """fn(worker, i) for i in range(count), piece i on worker i % workers; returns workers.

    For work whose pieces each call BLAS (single-threaded meanwhile) and nogil Numba: one whole
    piece per thread at a time. The assignment is fixed, so what a worker sums over its pieces does
    not depend on timing. Returns 0, having run nothing, where BLAS has one thread or another
    caller holds its threads: then run the pieces yourself.
    """
    return _fan_out(count, lambda k, workers: [fn(k, i) for i in range(k, count, workers)])


def _fan_out(n, share):
    """share(k, workers) for k < workers = min(BLAS threads, n), on as many threads; 0 where it cannot."""
    controllers = _blas() if n >= 2 else ()
    before = [c.num_threads for c in controllers]
    if max(before, default=1) < 2 or not _lock.acquire(blocking=False):
        return 0
    global _pool, _pool_size
    try:
        workers = min(max(before), n)
        if _pool is None or _pool_size < workers - 1:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="minidl-blas"), workers - 1
        for c in controllers:
            c.set_num_threads(1)
        try:
            futures = [_pool.submit(share, k, workers) for k in range(1, workers)]
            try:
                share(0, workers)   # the caller takes the first share
            finally:  # every share has finished (or failed) before the thread count comes back
                errors = [f.exception() for f in futures]
            for e in errors:
                if e is not None:
                    raise e
        finally:
            for c, n in zip(controllers, before):
                c.set_num_threads(n)
    finally:
        _lock.release()
    return workers
