"""Batch normalisation per channel, x viewed as (N, C, L): reference, Numba and CUDA.

    batch_norm_forward(x, weight, bias, running_mean, running_var, params) -> y (N, C, L), saved
    batch_norm_backward(gy, saved, need_gb=True) -> gx (N, C, L), gweight (C,) or None, gbias (C,) or None

params: a BNParams(training, momentum, eps). training: batch mean and biased variance; the running
buffers (or None) are updated in place, r = (1 - momentum) r + momentum * stat, the variance
unbiased (m / (m - 1), m = N*L). Otherwise the running buffers normalise. weight, bias: (C,) or
None. ``saved`` is whatever that backend's forward returned (it carries weight and training).
The CUDA source is cuda/batchnorm.cu; the autograd Function is minidl/functional/norm.py.
"""
from collections import namedtuple

import numpy as np

from minidl.kernels import _cuda, _numba
from minidl.kernels._numba import njit, prange

OPS = ("batch_norm_forward", "batch_norm_backward")
BNParams = namedtuple("BNParams", "training momentum eps")


def _update_running(running_mean, running_var, momentum, mean, var, m):
    running_mean *= 1 - momentum
    running_mean += (momentum * mean).astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += (momentum * var * (m / (m - 1))).astype(running_var.dtype)


# ==== reference: the textbook formulas as whole-array NumPy (also the CuPy fallback) ====

def reference_batch_norm_forward(x, weight, bias, running_mean, running_var, params):
    training, momentum, eps = params
    if training:
        mean = x.mean(axis=(0, 2))
        var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
        if running_mean is not None:
            _update_running(running_mean, running_var, momentum, mean, var, x.size // x.shape[1])
    else:
        mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
    inv_std = (1 / (var + eps) ** 0.5).astype(x.dtype)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    y = xhat * weight[:, None] if weight is not None else xhat
    if bias is not None:
        y = y + bias[:, None]
    return y, (xhat, inv_std, weight, training)


def reference_batch_norm_backward(gy, saved, need_gb=True):
    xhat, inv_std, weight, training = saved
    gxhat = gy * weight[:, None] if weight is not None else gy
    if training:
        # mean and var depend on x too: gx = inv_std * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
        gx = inv_std[:, None] * (gxhat - gxhat.mean(axis=(0, 2), keepdims=True)
                                 - xhat * (gxhat * xhat).mean(axis=(0, 2), keepdims=True))
    else:
        gx = gxhat * inv_std[:, None]
    gw = (gy * xhat).sum(axis=(0, 2)) if weight is not None else None
    gb = gy.sum(axis=(0, 2)) if need_gb else None
    return gx, gw, gb


# ==== Numba: one channel per thread, sums in float64, two passes over x each way ====

@njit(cache=True, parallel=True)
def _bn_stats(x, mean, var):
    N, C, L = x.shape
    for c in prange(C):
        shift = np.float64(x[0, c, 0])  # shifted sums: var = E[u^2] - E[u]^2 does not cancel
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for l in range(L):
                u = x[n, c, l] - shift
                s1 += u
                s2 += u * u
        m = N * L
        d = s1 / m
        mean[c] = shift + d
        var[c] = max(s2 / m - d * d, 0.0)


@njit(cache=True, parallel=True)
def _bn_apply(x, mean, scale, shift, y):
    N, C, L = x.shape
    for c in prange(C):
        mu, a, b = mean[c], scale[c], shift[c]
        for n in range(N):
            for l in range(L):
                y[n, c, l] = (x[n, c, l] - mu) * a + b


@njit(cache=True, parallel=True)
def _bn_bwd(gy, x, mean, inv_std, weight, training, gx, gw, gb):
    N, C, L = x.shape
    m = N * L
    for c in prange(C):
        mu = np.float64(mean[c])
        s1 = 0.0   # sum gy
        s2 = 0.0   # sum gy * (x - mean)
        for n in range(N):
            for l in range(L):
                g = np.float64(gy[n, c, l])
                s1 += g
                s2 += g * (x[n, c, l] - mu)
        istd = np.float64(inv_std[c])
        gw[c] = s2 * istd
        gb[c] = s1
        k1 = weight[c] * istd
        mgy = s1 / m if training else 0.0
        k2 = k1 * istd * istd * s2 / m if training else 0.0
        for n in range(N):
            for l in range(L):
                gx[n, c, l] = k1 * (gy[n, c, l] - mgy) - (x[n, c, l] - mu) * k2


def numba_batch_norm_forward(x, weight, bias, running_mean, running_var, params):
    training, momentum, eps = params
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    if training:
        mean, var = np.empty(C), np.empty(C)
        _numba.run(_bn_stats, x.size, x, mean, var)
        if running_mean is not None:
            _update_running(running_mean, running_var, momentum, mean, var, x.size // C)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = 1 / np.sqrt(var + eps)
    scale = inv_std * weight if weight is not None else inv_std
    shift = bias.astype(np.float64) if bias is not None else np.zeros(C)
    y = np.empty_like(x)
    t = x.dtype.type
    _numba.run(_bn_apply, x.size, x, mean.astype(t), scale.astype(t), shift.astype(t), y)
    return y, (x, mean.astype(t), inv_std.astype(t), weight, training)


def numba_batch_norm_backward(gy, saved, need_gb=True):
    x, mean, inv_std, weight, training = saved
    gy = np.ascontiguousarray(gy)
    C, t = x.shape[1], x.dtype.type
    w = weight.astype(t) if weight is not None else np.ones(C, dtype=t)
    gx, gw, gb = np.empty_like(x), np.empty(C, dtype=t), np.empty(C, dtype=t)
    _numba.run(_bn_bwd, x.size, gy, x, mean, inv_std, w, bool(training), gx, gw, gb)
    return gx, (gw if weight is not None else None), (gb if need_gb else None)


# ==== CUDA (cuda/batchnorm.cu): channel c on grid.y, plane positions on grid.x, each thread
# looping over n. Per-channel sums in double as per-thread partials (no atomics: deterministic),
# a C-thread kernel for the statistics (and running buffers), one elementwise pass -- forward
# 3 kernels, backward 3, instead of a dozen array expressions. ====

def _sum_blocks(N, C, L):
    """grid.x of the sums kernel: at least 128 elements per thread, about 512 blocks in all, at most
    64 per channel (one thread adds a channel's 64*THREADS partials, so they must stay few)."""
    blocks = min(-(-L // _cuda.THREADS), -(-N * L // (_cuda.THREADS * 128)), -(-512 // min(C, _cuda.MAX_GRID_Y)), 64)
    return int(max(1, min(blocks, _cuda.MAX_BLOCKS)))


def _channels_launch(name, dtype, N, C, L, args, blocks=None):
    if N * C * L <= 0:
        return
    blocks = blocks or int(max(1, min(-(-L // _cuda.THREADS), _cuda.MAX_BLOCKS)))
    _cuda.launch("batchnorm", name, dtype, 1, args, grid_y=C, blocks=blocks)


def _vector(a, dtype):
    return _cuda.cupy().ascontiguousarray(a.astype(dtype, copy=False))


def cuda_batch_norm_forward(x, weight, bias, running_mean, running_var, params):
    training, momentum, eps = params
    cp, x = _cuda.cupy(), _cuda.contiguous(x)
    N, C, L = (int(v) for v in x.shape)
    dtype = x.dtype
    stats = cp.empty((3, C), dtype=dtype)           # mean, inv_std, biased var
    w = _vector(weight, dtype) if weight is not None else stats
    b = _vector(bias, dtype) if bias is not None else stats
    m = N * L
    if training:
        blocks = _sum_blocks(N, C, L)
        P = blocks * _cuda.THREADS
        parts = cp.empty(2 * C * P, dtype=np.float64)
        _channels_launch("bn_sums_kernel", dtype, N, C, L,
                         (x, x, x, np.int64(L), parts, np.int32(0), np.int32(N), np.int32(C), np.int64(L)), blocks)
        direct = running_mean is not None and all(
            r.dtype == dtype and r.flags.c_contiguous and r.shape == (C,) for r in (running_mean, running_var))
        rm, rv = (running_mean, running_var) if direct else (stats, stats)
        _cuda.launch("batchnorm", "bn_stats_kernel", dtype, C,
                     (parts, np.int64(P), x, np.int64(L), stats, rm, rv, np.int32(C), np.int64(m), np.float64(eps),
                      np.float64(momentum), np.int32(0), np.int32(direct)))
        if running_mean is not None and not direct:  # buffers of another dtype or layout: array expressions
            _update_running(running_mean, running_var, momentum, stats[0], stats[2], m)
    else:
        rm, rv = _vector(running_mean, dtype), _vector(running_var, dtype)
        parts = cp.empty(2, dtype=np.float64)  # not read in mode 1
        _cuda.launch("batchnorm", "bn_stats_kernel", dtype, C,
                     (parts, np.int64(0), x, np.int64(0), stats, rm, rv, np.int32(C), np.int64(m), np.float64(eps),
                      np.float64(momentum), np.int32(1), np.int32(0)))
    y = cp.empty_like(x)
    _channels_launch("bn_fwd_kernel", dtype, N, C, L,
                     (x, y, stats, w, b, np.int32(weight is not None), np.int32(bias is not None),
                      np.int32(N), np.int32(C), np.int64(L)))
    return y, (x, stats, weight, training)


def cuda_batch_norm_backward(gy, saved, need_gb=True):
    x, stats, weight, training = saved
    cp, gy = _cuda.cupy(), _cuda.contiguous(gy)
    N, C, L = (int(v) for v in x.shape)
    dtype = x.dtype
    blocks = _sum_blocks(N, C, L)
    P = blocks * _cuda.THREADS
    parts = cp.empty(2 * C * P, dtype=np.float64)
    _channels_launch("bn_sums_kernel", dtype, N, C, L,
                     (gy, x, stats, np.int64(1), parts, np.int32(1), np.int32(N), np.int32(C), np.int64(L)), blocks)
    w = _vector(weight, dtype) if weight is not None else stats
    coef = cp.empty((3, C), dtype=dtype)
    gw, gb = cp.empty(C, dtype=dtype), cp.empty(C, dtype=dtype)
    _cuda.launch("batchnorm", "bn_bwd_stats_kernel", dtype, C,
                 (parts, np.int64(P), stats, w, np.int32(weight is not None), coef, gw, gb, np.int32(C),
                  np.int64(N * L), np.int32(bool(training))))
    gx = cp.empty_like(x)
    _channels_launch("bn_bwd_kernel", dtype, N, C, L, (gy, x, stats, coef, gx, np.int32(N), np.int32(C), np.int64(L)))
    return gx, (gw if weight is not None else None), (gb if need_gb else None)

