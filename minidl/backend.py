"""Array backends: NumPy on the CPU, CuPy on the GPU.

The backend of an op is the array module of its data (``xp_of``), as in Chainer and DeZero.
There is no global "current device". CuPy is imported lazily, and only if it is installed,
so ``import minidl`` never pulls it in on a CPU-only machine.
"""
import os
import re

import numpy as np

INSTALL_HINT = 'install CuPy with: pip install -e ".[cuda12]" (CUDA 12) or pip install -e ".[cuda13]" (CUDA 13)'
NO_DEVICE_HINT = ("check `nvidia-smi` sees a GPU and that the CuPy wheel matches the driver's CUDA version "
                  '(pip install -e ".[cuda12]" or ".[cuda13]"), or use device="cpu"')

_cupy = None          # the cupy module once imported
_cupy_error = None    # why it could not be imported / used, once known
_gpu_ok = None        # cached answer of gpu_available()


def _is_cupy_array(a):
    # Checks the type's module instead of importing cupy: cheap and safe without CuPy.
    return type(a).__module__.split(".")[0] == "cupy"


def cupy():
    """The cupy module, or raise a RuntimeError that says why it cannot be used."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy as cp
            _cupy = cp
        except Exception as e:  # ImportError, or a broken CUDA install
            _cupy_error = f"CuPy is not installed or failed to import ({type(e).__name__}: {e}); {INSTALL_HINT}"
    if _cupy is None:
        raise RuntimeError(f'device "cuda" requested but {_cupy_error}')
    return _cupy


def gpu_available():
    """True when CuPy imports and at least one CUDA device answers. Never raises."""
    return gpu_unavailable_reason() is None


def gpu_unavailable_reason():
    """None if the GPU is usable, else a sentence saying why not (no CuPy, or no device)."""
    global _gpu_ok
    try:
        cp = cupy()
    except RuntimeError as e:
        return str(e)
    if _gpu_ok is None:
        try:
            n = cp.cuda.runtime.getDeviceCount()
            if n < 1:
                _gpu_ok = f"CuPy is installed but no CUDA device was found; {NO_DEVICE_HINT}"
            else:
                cp.zeros(1).sum().item()  # touch the device: a broken driver fails here
                _gpu_ok = True
        except Exception as e:
            _gpu_ok = f"CuPy is installed but no usable CUDA device ({type(e).__name__}: {e}); {NO_DEVICE_HINT}"
    return None if _gpu_ok is True else f'device "cuda" requested but {_gpu_ok}'


def require_gpu():
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    return cupy()


def xp_of(*arrays):
    """numpy or cupy: the array module of the given arrays (numpy for Python scalars)."""
    for a in arrays:
        if _is_cupy_array(a):
            return _cupy if _cupy is not None else cupy()
    return np


def device_of(array):
    return "cuda" if _is_cupy_array(array) else "cpu"


def check_device(device):
    """"cpu" or "cuda" for a device name; "cuda:0" is "cuda". Any other GPU index is refused: minidl
    runs on CuPy's current device and never switches, so "cuda:1" would silently use GPU 0."""
    if device is None:
        return "cpu"
    device = str(device)
    if device in ("cpu", "cuda"):
        return device
    if device.startswith("cuda:"):
        index = device[5:]
        if index == "0":
            return "cuda"
        if index.isdigit():
            raise ValueError(f"device {device!r}: minidl runs on one GPU, CuPy's current device; use \"cuda\" and "
                             f"choose the GPU with the environment variable CUDA_VISIBLE_DEVICES={index}")
    raise ValueError(f'unknown device {device!r}: expected "cpu" or "cuda" (or "cuda:0")')


def to_device(array, device):
    """Move a raw array to "cpu" (numpy) or "cuda" (cupy); a no-op if it is already there."""
    device = check_device(device)
    if device == "cpu":
        return as_numpy(array)
    cp = require_gpu()
    return cp.asarray(array)


def as_numpy(array):
    """A host numpy array for any array (copies from the GPU when needed)."""
    if _is_cupy_array(array):
        return array.get()
    return np.asarray(array)


def scatter_add(target, index, values):
    """target[index] += values with repeated indices accumulated (np.add.at on either backend)."""
    if _is_cupy_array(target):
        cupy().add.at(target, index, values)
    else:
        np.add.at(target, index, values)
    return target


def set_tf32(enabled):
    """Let cuBLAS use TF32 tensor cores for float32 matrix products on the GPU (off by default).

    TF32 rounds each float32 operand of a GEMM to 10 mantissa bits (float32 keeps 23) and
    accumulates in float32. Products run several times faster on Ampere/Hopper GPUs (the GEMMs of a
    VGG16 step: 132 ms -> 37 ms on an H100), but results carry relative errors of about 1e-3
    (about 3e-4 norm-wise) instead of about 1e-6, so float32 results no longer match the CPU to
    1e-4. Training is normally unaffected (PyTorch's allow_tf32 makes the same trade). float64 is
    never changed and the CPU ignores the setting. Convolutions are im2col + GEMM here, so TF32
    covers them too. Implemented as cuBLAS's TF32 math mode on the cuBLAS handle of CuPy's current
    device and thread (through CuPy's public ``cupy.cuda.cublas`` binding); CuPy's documented
    ``CUPY_TF32=1`` environment variable has the same effect from the start.
    """
    cp = require_gpu()
    global _tf32
    handle = cp.cuda.device.get_cublas_handle()
    cublas = cp.cuda.cublas
    cublas.setMathMode(handle, _CUBLAS_TF32_TENSOR_OP_MATH if enabled else _CUBLAS_DEFAULT_MATH)
    _tf32 = bool(enabled)


# cuBLAS math modes (cublas_api.h): TF32 lets single-precision GEMMs with a 32F compute type use
# tensor cores. Set through CuPy's public cuBLAS binding on the handle CuPy's matmul uses.
_CUBLAS_DEFAULT_MATH, _CUBLAS_TF32_TENSOR_OP_MATH = 0, 3
_tf32 = None   # what set_tf32 last chose; None: never called


def tf32_enabled():
    """True when float32 GEMMs on the GPU may use TF32 (after set_tf32(True), or CUPY_TF32=1 at start)."""
    if _cupy is None:
        return False
    if _tf32 is not None:
        return _tf32
    return os.environ.get("CUPY_TF32", "0") == "1"


def out_of_memory(where, exc):
    """A MemoryError for ``exc`` (CuPy's or NumPy's out-of-memory error) that names the op and the
    bytes it asked for; None when ``exc`` already is one (an inner op named itself first)."""
    if getattr(exc, "minidl_op", None):
        return None
    text = str(exc)
    found = re.search(r"allocating ([\d,]+) bytes", text)  # CuPy: "Out of memory allocating 1,024 bytes (...)"
    requested = int(found.group(1).replace(",", "")) if found else getattr(exc, "_total_size", None)  # NumPy
    on_gpu = type(exc).__module__.split(".")[0] == "cupy"
    size = f"{requested:,} bytes ({requested / 2 ** 30:.2f} GiB)" if requested is not None else "an unknown size"
    hint = ("use a smaller batch, drop references to tensors no longer needed, or free CuPy's cached blocks "
            "with cupy.get_default_memory_pool().free_all_blocks()" if on_gpu else "use a smaller batch")
    err = MemoryError(f"{where}: out of {'GPU' if on_gpu else 'host'} memory asking for {size} ({text}); {hint}")
    err.minidl_op, err.requested_bytes = where, requested
    return err
