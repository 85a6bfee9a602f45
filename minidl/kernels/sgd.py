"""The SGD update (PyTorch's form) for one parameter: reference, Numba and CUDA.

    sgd_update(p, g, v, lr, momentum, weight_decay, nesterov) -> v       (p updated in place)
        d = g + weight_decay * p;  v = momentum * v + d  (v = d on the first step, when v is None)
        p -= lr * (d + momentum * v if nesterov else v)        (without momentum: p -= lr * d; v stays None)

The reference is the array expressions (they work on NumPy and CuPy arrays alike, so the Numba and
CUDA versions fall back to them for non-contiguous or mixed-dtype arguments). The CUDA source is
cuda/sgd.cu; the optimiser is minidl/optim.py.
"""
import numpy as np

from minidl.kernels import _cuda, _numba
from minidl.kernels._numba import njit, prange

OPS = ("sgd_update",)


def reference_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if v is None:
            v = g.copy()
        else:
            v *= momentum
            v += g
        g = g + momentum * v if nesterov else v
    p -= lr * g
    return v


def _fused(p, g, v):
    """True when one pass over flat memory may do it: same shape and dtype, C-contiguous, float."""
    return (p.dtype in _cuda.CTYPES and
            all(a is None or (a.dtype == p.dtype and a.shape == p.shape and a.flags.c_contiguous) for a in (p, g, v)))


# ==== Numba: one pass, element by element, instead of up to six array expressions ====

@njit(cache=True, parallel=True)
def _sgd(p, g, v, lr, mu, wd, mode):
    # mode bits: 1 momentum, 2 first step (the buffer starts as d), 4 Nesterov
    for i in prange(p.size):
        d = g[i] + wd * p[i] if wd != 0 else g[i]
        if mode & 1:
            vi = d if mode & 2 else mu * v[i] + d
            v[i] = vi
            d = d + mu * vi if mode & 4 else vi
        p[i] = p[i] - lr * d


def _mode(momentum, first, nesterov):
    return (1 | (2 if first else 0) | (4 if nesterov else 0)) if momentum else 0


def numba_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    if not _fused(p, g, v):
        return reference_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov)
    mode = _mode(momentum, v is None, nesterov)
    if momentum and v is None:
        v = np.empty_like(p)
    t = p.dtype.type  # constants in the parameter's dtype keep float32 arithmetic in float32
    _numba.run(_sgd, p.size, p.reshape(-1), g.reshape(-1), (p if v is None else v).reshape(-1),
               t(lr), t(momentum), t(weight_decay), mode)
    return v


# ==== CUDA (cuda/sgd.cu): one thread per element, the same pass ====

def cuda_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    if not _fused(p, g, v):
        return reference_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov)
    mode = _mode(momentum, v is None, nesterov)
    if momentum and v is None:
        v = _cuda.cupy().empty_like(p)
    t = p.dtype.type
    _cuda.launch("sgd", "sgd_kernel", p.dtype, p.size,
                 (p, g, p if v is None else v, np.int64(p.size), t(lr), t(momentum), t(weight_decay), np.int32(mode)))
    return v
