"""minidl: a from-scratch deep-learning engine for the ImageNet era of ConvNets."""
__version__ = "0.1.0"

import os as _os
import sys as _sys

# Idle worker threads: after each call OpenBLAS's workers spin for up to ~0.1 s, and libgomp's (Numba's
# parallel kernels) spin too, so on a machine with few cores every kernel that follows a GEMM (and every
# GEMM that follows a kernel) fights a spinning thread for the core: a CIFAR-10 training step on 2 cores
# ran 1.3-1.5x slower than with both told to sleep at once (benchmarks/RESULTS.md). Both variables are
# read when the libraries load, so they are set here, first; a value already in the environment wins.
# When NumPy came first, OpenBLAS has read its variable already and _restart_blas_threads applies it;
# OMP_WAIT_POLICY works either way (Numba loads OpenMP lazily).
_BLAS_LOADED_FIRST = "numpy" in _sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _restart_blas_threads():
    """NumPy came first, so its OpenBLAS started its workers with the default spin: restart them.

    ``import numpy`` before ``import minidl`` is what nearly every script and notebook does, and left
    the VGG-style step of benchmarks/cpu.py 15-25% slower (840-963 against 704-741 ms, 2-core EPYC).
    OpenBLAS re-reads its variables (openblas_read_env) and rebuilds its pool the way it does around
    a fork (blas_thread_shutdown_, then blas_thread_init), with the same number of threads. Only for
    OpenBLAS's own pthreads pool (an OpenMP build obeys OMP_WAIT_POLICY), found by threadpoolctl;
    anything else is left as it is. Returns how many pools restarted.
    """
    import ctypes
    from threadpoolctl import threadpool_info
    restarted = 0
    for lib in threadpool_info():
        if lib["internal_api"] != "openblas" or lib.get("threading_layer") != "pthreads":
            continue
        try:
            so = ctypes.CDLL(lib["filepath"])
            read_env, shutdown, init = so.openblas_read_env, so.blas_thread_shutdown_, so.blas_thread_init
        except (OSError, AttributeError):
            continue
        read_env()
        shutdown()
        init()
        restarted += 1
    return restarted


RESTARTED_BLAS_POOLS = _restart_blas_threads() if _BLAS_LOADED_FIRST else 0


def _keep_freed_memory():
    """Let glibc's malloc keep freed blocks up to 256 MiB for reuse instead of handing them back to the OS.

    A training step allocates and frees the same activation-sized arrays (10-100 MB) at every step;
    by default glibc returns each one (mmap for blocks over a threshold that grows to at most 32 MiB,
    and trimming the heap top), and the next step faults it in again page by page. Keeping them
    made the VGG-style step of benchmarks/cpu.py 10% faster (505 -> 456 ms, minor page faults
    75,000 -> 27,000) and its peak memory lower (371 -> 347 MiB), since freed blocks are reused
    instead of new ones mapped. Skipped off glibc, when MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ is set (the user's choice wins), or with MINIDL_KEEP_FREED_MEMORY=0.
    """
    if _os.environ.get("MINIDL_KEEP_FREED_MEMORY", "1") == "0" or any(
            k in _os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, ctypes.c_int(256 * 2 ** 20)) and
                    libc.mallopt(m_trim_threshold, ctypes.c_int(2 ** 31 - 1)))
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False


KEEPS_FREED_MEMORY = _keep_freed_memory()

from minidl.autograd import Tensor, Function, tensor, no_grad, enable_grad, is_grad_enabled  # noqa: F401
from minidl.random import manual_seed  # noqa: F401
from minidl.gradcheck import gradcheck, GradcheckError  # noqa: F401
from minidl.backend import gpu_available, set_tf32  # noqa: F401
from minidl import functional  # noqa: F401
from minidl import nn  # noqa: F401
from minidl import optim  # noqa: F401
from minidl import models  # noqa: F401
from minidl import data, metrics  # noqa: F401
