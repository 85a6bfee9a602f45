"""Local response normalisation across channels (AlexNet's): reference, Numba and CUDA.

    lrn_forward(x, params) -> y (N, C, H, W), saved = (x, y, scale)
        scale = k + alpha * sum of x^2 over channels c - size//2 ... c + (size-1)//2 (PyTorch's window)
        y = x * scale ** -beta
    lrn_backward(gy, saved, params) -> gx
        gx = gy * scale^-beta - 2*alpha*beta * x * sum over the windows containing c of gy*y/scale

params: an LRNParams(size, alpha, beta, k). The CUDA source is cuda/lrn.cu; the autograd Function
is minidl/functional/norm.py (LocalResponseNorm).
"""
import math
from collections import namedtuple

import numpy as np

from minidl.kernels import _cuda, _numba
from minidl.kernels._numba import njit, prange

OPS = ("lrn_forward", "lrn_backward")
LRNParams = namedtuple("LRNParams", "size alpha beta k")


# ==== reference: one loop over channels, whole-array NumPy per channel ====

def _window(c, size, channels):
    """Channels in output c's window: c - size//2 ... c + (size-1)//2, clipped (PyTorch's, also for even size)."""
    return range(max(c - size // 2, 0), min(c + (size - 1) // 2, channels - 1) + 1)


def reference_lrn_forward(x, params):
    size, alpha, beta, k = params
    scale = np.empty_like(x)
    for c in range(x.shape[1]):
        scale[:, c] = k + alpha * sum(x[:, cc] ** 2 for cc in _window(c, size, x.shape[1]))
    y = x * scale ** -beta
    return y, (x, y, scale)


def reference_lrn_backward(gy, saved, params):
    size, alpha, beta, k = params
    x, y, scale = saved
    # d y_c / d x_j = [c == j] scale_c^-beta - 2 alpha beta x_j y_c / scale_c   for j in window(c)
    gx = gy * scale ** -beta
    for c in range(x.shape[1]):
        for j in _window(c, size, x.shape[1]):
            gx[:, j] -= 2 * alpha * beta * x[:, j] * gy[:, c] * y[:, c] / scale[:, c]
    return gx


# ==== Numba: x as (N, C, L), one (n, c) plane per thread ====

@njit(cache=True, inline="always")
def _times_pow_neg(v, s, beta):
    """v * s ** -beta; AlexNet's beta = 0.75 as two square roots, several times faster than pow.

    A division, not 1.0 / ...: a float literal would make float32 arithmetic float64 (in Numba).
    """
    if beta == 0.75:
        return v / math.sqrt(s * math.sqrt(s))
    return v * s ** -beta


@njit(cache=True, parallel=True)
def _lrn_fwd(x, size, alpha, beta, k, y, scale):
    N, C, L = x.shape
    before, after = size // 2, (size - 1) // 2  # channels c - size//2 ... c + (size-1)//2, as PyTorch
    for q in prange(N * C):
        n, c = q // C, q % C
        s = scale[n, c]
        s[:] = 0
        for cc in range(max(c - before, 0), min(c + after, C - 1) + 1):
            for l in range(L):
                s[l] += x[n, cc, l] * x[n, cc, l]
        for l in range(L):
            s[l] = k + alpha * s[l]
            y[n, c, l] = _times_pow_neg(x[n, c, l], s[l], beta)


def numba_lrn_forward(x, params):
    size, alpha, beta, k = params
    n, c = x.shape[:2]
    xs = np.ascontiguousarray(x).reshape(n, c, -1)
    y, scale = np.empty_like(xs), np.empty_like(xs)
    t = x.dtype.type  # constants in the array's dtype keep float32 arithmetic in float32
    _numba.run(_lrn_fwd, x.size * (size + 2), xs, int(size), t(alpha), t(beta), t(k), y, scale)
    return y.reshape(x.shape), (xs, y, scale)


@njit(cache=True, parallel=True)
def _lrn_bwd(x, y, scale, gy, size, two_alpha_beta, beta, gx, ratio):
    N, C, L = x.shape
    before, after = size // 2, (size - 1) // 2
    for q in prange(N * C):
        n, c = q // C, q % C
        for l in range(L):
            ratio[n, c, l] = gy[n, c, l] * y[n, c, l] / scale[n, c, l]
    for q in prange(N * C):
        n, c = q // C, q % C
        g = gx[n, c]
        g[:] = 0
        # input channel c sits in the windows of outputs c - after ... c + before
        for cc in range(max(c - after, 0), min(c + before, C - 1) + 1):
            for l in range(L):
                g[l] += ratio[n, cc, l]
        for l in range(L):
            g[l] = _times_pow_neg(gy[n, c, l], scale[n, c, l], beta) - two_alpha_beta * x[n, c, l] * g[l]


def numba_lrn_backward(gy, saved, params):
    size, alpha, beta, k = params
    x, y, scale = saved
    n, c = gy.shape[:2]
    g = np.ascontiguousarray(gy).reshape(n, c, -1)
    gx, ratio = np.empty_like(g), np.empty_like(g)
    t = gy.dtype.type
    _numba.run(_lrn_bwd, gy.size * (size + 4), x.reshape(g.shape), y.reshape(g.shape), scale.reshape(g.shape), g,
               int(size), t(2 * alpha * beta), t(beta), gx, ratio)  # 2 * alpha in Numba would be float64
    return gx.reshape(gy.shape)


# ==== CUDA (cuda/lrn.cu): one thread per element, looping over its window of channels ====

def cuda_lrn_forward(x, params):
    size, alpha, beta, k = params
    cp, x = _cuda.cupy(), _cuda.contiguous(x)
    n, c = x.shape[:2]
    L = x.size // (n * c) if x.size else 0
    y, scale = cp.empty_like(x), cp.empty_like(x)
    t = x.dtype.type
    _cuda.launch("lrn", "lrn_fwd_kernel", x.dtype, x.size,
                 (x, y, scale, np.int64(x.size), np.int32(c), np.int64(L), np.int32(size), t(alpha), t(beta), t(k)))
    return y, (x, y, scale)


def cuda_lrn_backward(gy, saved, params):
    size, alpha, beta, k = params
    cp = _cuda.cupy()
    x, y, scale = saved
    gy = _cuda.contiguous(gy).reshape(x.shape)
    n, c = x.shape[:2]
    L = x.size // (n * c) if x.size else 0
    gx = cp.empty_like(x)
    t = x.dtype.type
    _cuda.launch("lrn", "lrn_bwd_kernel", x.dtype, x.size,
                 (x, y, scale, gy, gx, np.int64(x.size), np.int32(c), np.int64(L), np.int32(size), t(alpha), t(beta)))
    return gx
