"""ReLU kernels: reference, Numba and CUDA.

    relu_forward(x) -> y = max(x, 0) (NaN passes through, as x * (x > 0) and PyTorch), saved
    relu_backward(gy, saved, params=None) -> gx = gy where x > 0, else 0

``saved`` is what that backend's forward returned: a bool mask on the CPU, a bit mask on the GPU
(1 bit per element instead of a bool's 8: bit j of byte q is element q + j*Q of x, Q the number of
bytes). The CUDA source is cuda/relu.cu; the autograd Function is minidl/functional/activation.py.
"""
import numpy as np

from minidl.kernels import _cuda, _numba
from minidl.kernels._numba import njit, prange

OPS = ("relu_forward", "relu_backward")


# ==== reference ====

def reference_relu_forward(x):
    mask = x > 0
    return x * mask, mask


def reference_relu_backward(gy, saved, params=None):
    return gy * saved


# ==== Numba: one pass each way instead of NumPy's two (compare, multiply) plus a temporary ====

@njit(cache=True, parallel=True)
def _relu_fwd(x, y, mask):
    for i in prange(x.size):
        v = x[i]
        mask[i] = v > 0
        y[i] = 0 if v <= 0 else v  # NaN is neither: it passes through


@njit(cache=True, parallel=True)
def _relu_bwd(mask, gy, gx):
    for i in prange(gy.size):
        gx[i] = gy[i] if mask[i] else 0


def numba_relu_forward(x):
    xf = np.ascontiguousarray(x).reshape(-1)
    y, mask = np.empty_like(xf), np.empty(xf.shape, dtype=np.bool_)
    _numba.run(_relu_fwd, xf.size, xf, y, mask)
    return y.reshape(x.shape), mask.reshape(x.shape)


def numba_relu_backward(gy, saved, params=None):
    gf = np.ascontiguousarray(gy).reshape(-1)
    gx = np.empty_like(gf)
    _numba.run(_relu_bwd, gf.size, np.ascontiguousarray(saved).reshape(-1), gf, gx)
    return gx.reshape(gy.shape)


# ==== CUDA (cuda/relu.cu): one thread per 8 elements q, q+Q, ..., q+7Q (coalesced) and one mask byte ====

def cuda_relu_forward(x):
    if x.dtype not in _cuda.CTYPES:   # integer tensors: the array expressions (a bool mask)
        return reference_relu_forward(x)
    cp, x = _cuda.cupy(), _cuda.contiguous(x)
    y = cp.empty_like(x)
    bits = cp.empty((x.size + 7) // 8, dtype=np.uint8)
    _cuda.launch("relu", "relu_fwd_kernel", x.dtype, bits.size, (x, y, bits, np.int64(x.size)))
    return y, bits


def cuda_relu_backward(gy, saved, params=None):
    if saved.dtype != np.uint8 or gy.dtype not in _cuda.CTYPES:
        return reference_relu_backward(gy, saved)
    cp, gy = _cuda.cupy(), _cuda.contiguous(gy)
    gx = cp.empty_like(gy)
    _cuda.launch("relu", "relu_bwd_kernel", gy.dtype, saved.size, (saved, gy, gx, np.int64(gy.size)))
    return gx
