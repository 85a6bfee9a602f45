"""Numba, if it imports: ``njit``, ``prange``, ``u64`` and a serial-below-a-size launcher for the kernels.

Without Numba (or with one that fails to import) ``njit`` leaves the functions as plain Python, so
the family modules still import; minidl.kernels then serves the reference versions instead of the
Numba ones, after a single warning (see ``minidl.kernels.numba_unavailable``).
"""
try:
    import numba
    from numba import prange, uint64 as u64  # noqa: F401
    from numba.core.errors import NumbaError
    njit = numba.njit
    ERRORS = (NumbaError,)
    MISSING = None
except Exception as e:  # ImportError, or a broken llvmlite
    numba = None
    MISSING = f"{type(e).__name__}: {e}"
    ERRORS = ()
    prange = range
    u64 = int

    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

# Below this many element-operations a job runs on one thread: waking the pool's other threads
# costs microseconds when idle and milliseconds on a busy machine, more than a small job takes.
SERIAL_BELOW = 1 << 15


def run(kernel, work, *args, serial_below=None):
    """Call a parallel Numba kernel, on a single thread when ``work`` is too small to share."""
    if work >= (SERIAL_BELOW if serial_below is None else serial_below) or numba is None:
        return kernel(*args)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)
