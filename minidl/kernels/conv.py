"""Convolution kernels: im2col / col2im (reference, Numba, CUDA) and the GPU's 1x1 batched-GEMM path.

    im2col(x, window, out=None) -> col (C*kh*kw, N*oh*ow); rows ordered (c, i, j), columns (n, y, x):
        col[(c, i, j), (n, y, x)] = x[n, c, y*sh - ph + i, x*sw - pw + j]  (0 in the padding)
    col2im(gcol, x_shape, window, out=None) -> gx (N, C, H, W): the adjoint, overlapping windows summed

``window`` is a minidl.kernels._geometry.Window. ``out``: an optional C-contiguous result to write
into and return (conv2d reuses its big buffers: NumPy returns big blocks to the OS when freed).
The CUDA source is cuda/conv.cu; the autograd Function is minidl/functional/conv.py.
"""
import numpy as np

from minidl.kernels import _cuda
from minidl.kernels._numba import njit, prange, u64

OPS = ("im2col", "col2im")


def _out(op, out, shape, dtype, xp=np):
    return xp.empty(shape, dtype=dtype) if out is None else _cuda.check_out(op, out, shape, dtype)


def _check_col(col, x_shape, w):
    N, C = int(x_shape[0]), int(x_shape[1])
    expected = (C * w.kh * w.kw, N * w.oh * w.ow)
    if tuple(col.shape) != expected:
        raise ValueError(f"col2im: col has shape {tuple(col.shape)}, expected {expected} for x_shape "
                         f"{tuple(x_shape)}, kernel {w.kh}x{w.kw}, stride {w.sh}x{w.sw}, padding {w.ph}x{w.pw}")


# ==== reference: pad, then one strided slice per kernel offset (i, j) ====

def reference_im2col(x, window, out=None):
    w = window
    N, C = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (w.ph, w.ph), (w.pw, w.pw)))
    col = np.empty((C, w.kh, w.kw, N, w.oh, w.ow), dtype=x.dtype)
    for i in range(w.kh):
        for j in range(w.kw):
            patch = xp[:, :, i:i + w.sh * (w.oh - 1) + 1:w.sh, j:j + w.sw * (w.ow - 1) + 1:w.sw]  # (N, C, oh, ow)
            col[:, i, j] = patch.transpose(1, 0, 2, 3)
    col = col.reshape(C * w.kh * w.kw, N * w.oh * w.ow)
    if out is None:
        return col
    _out("im2col", out, col.shape, x.dtype)[...] = col
    return out


def reference_col2im(gcol, x_shape, window, out=None):
    w = window
    _check_col(gcol, x_shape, w)
    N, C, H, W = x_shape
    col = gcol.reshape(C, w.kh, w.kw, N, w.oh, w.ow)
    xp = np.zeros((N, C, H + 2 * w.ph, W + 2 * w.pw), dtype=gcol.dtype)
    for i in range(w.kh):
        for j in range(w.kw):
            xp[:, :, i:i + w.sh * (w.oh - 1) + 1:w.sh, j:j + w.sw * (w.ow - 1) + 1:w.sw] += \
                col[:, i, j].transpose(1, 0, 2, 3)
    gx = xp[:, :, w.ph:w.ph + H, w.pw:w.pw + W]
    if out is None:
        return np.ascontiguousarray(gx)
    _out("col2im", out, tuple(x_shape), gcol.dtype)[...] = gx
    return out


# ==== Numba ====
# im2col runs one col row (c, i, j) per thread and col2im one channel c per thread (prange): each
# thread then streams through whole contiguous rows of the big col buffer (measured ~1.5-2x faster
# than one (n, c) plane per thread, which interleaves kh*kw write streams), and no two threads
# write the same element, so no atomics are needed. Padding is never materialised: each output
# row is split into a zero part (window in the padding) and a copied part (in the input).
# Indices are unsigned (u64): Numba then drops its negative-index test from the inner loops, which
# made these copies of a few dozen floats 2x faster. All of them are >= 0 by construction.

@njit(cache=True, inline="always")
def _valid_columns(j, sw, pw, W, ow):
    """Output columns x whose input column x*sw - pw + j lies in [0, W): the range lo <= x < hi."""
    hi = min(ow, max(0, (W - 1 + pw - j) // sw + 1))
    lo = min(hi, max(0, (pw - j + sw - 1) // sw))
    return lo, hi


@njit(cache=True, inline="always")
def _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r):
    """Fill row r = (c, i, j) of col: x[n, c, y*sh - ph + i, x*sw - pw + j] for every (n, y, x)."""
    N, C, H, W = x.shape
    P = oh * ow
    c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
    lo, hi = _valid_columns(j, sw, pw, W, ow)
    xf, row, step = x.reshape(-1), col[r], u64(sw)
    for n in range(N):
        for y in range(oh):
            h = y * sh - ph + i
            d = u64(n * P + y * ow)              # col index of output (y, 0)
            if h < 0 or h >= H:                  # the whole window row lies in the padding
                for t in range(u64(ow)):
                    row[d + t] = 0
                continue
            for t in range(u64(lo)):             # left padding
                row[d + t] = 0
            s = u64(((n * C + c) * H + h) * W + lo * sw - pw + j)  # x index for output column lo
            dl = d + u64(lo)
            if sw == 1:                          # the common case: a contiguous copy
                for t in range(u64(hi - lo)):
                    row[dl + t] = xf[s + t]
            else:
                for t in range(u64(hi - lo)):
                    row[dl + t] = xf[s + t * step]
            for t in range(u64(hi), u64(ow)):    # right padding
                row[d + t] = 0


@njit(cache=True, parallel=True)
def _im2col_parallel(x, kh, kw, sh, sw, ph, pw, oh, ow, col):
    for r in prange(col.shape[0]):
        _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r)


@njit(cache=True)
def _im2col_serial(x, kh, kw, sh, sw, ph, pw, oh, ow, col):
    for r in range(col.shape[0]):
        _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r)


# Below this many elements waking the thread pool costs more than the copy itself (~1 ms per call
# on a busy 2-core machine, which made tiny gradient checks crawl), so small calls run serially.
PARALLEL_MIN_SIZE = 1 << 16


def numba_im2col(x, window, out=None):
    w = window
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    col = _out("im2col", out, (C * w.kh * w.kw, N * w.oh * w.ow), x.dtype)
    run = _im2col_parallel if col.size >= PARALLEL_MIN_SIZE else _im2col_serial
    run(x, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow, col)
    return col


@njit(cache=True, inline="always")
def _col2im_channel(col, kh, kw, sh, sw, ph, pw, oh, ow, x, c):
    """Sum the rows (c, i, j) of col back into the planes x[:, c], each at its window position."""
    N, C, H, W = x.shape
    P = oh * ow
    xf, step = x.reshape(-1), u64(sw)
    for n in range(N):
        x[n, c] = 0
    for i in range(kh):
        for j in range(kw):
            row = col[(c * kh + i) * kw + j]
            lo, hi = _valid_columns(j, sw, pw, W, ow)
            for n in range(N):
                for y in range(oh):
                    h = y * sh - ph + i
                    if h < 0 or h >= H:
                        continue
                    d = u64(n * P + y * ow + lo)                            # col index of (y, lo)
                    s = u64(((n * C + c) * H + h) * W + lo * sw - pw + j)  # its x index
                    if sw == 1:
                        for t in range(u64(hi - lo)):
                            xf[s + t] += row[d + t]
                    else:
                        for t in range(u64(hi - lo)):
                            xf[s + t * step] += row[d + t]


@njit(cache=True, parallel=True)
def _col2im_parallel(col, kh, kw, sh, sw, ph, pw, oh, ow, x):
    for c in prange(x.shape[1]):
        _col2im_channel(col, kh, kw, sh, sw, ph, pw, oh, ow, x, c)


@njit(cache=True)
def _col2im_serial(col, kh, kw, sh, sw, ph, pw, oh, ow, x):
    for c in range(x.shape[1]):
        _col2im_channel(col, kh, kw, sh, sw, ph, pw, oh, ow, x, c)


def numba_col2im(gcol, x_shape, window, out=None):
    w = window
    gcol = np.ascontiguousarray(gcol)
    _check_col(gcol, x_shape, w)
    gx = _out("col2im", out, tuple(x_shape), gcol.dtype)
    run = _col2im_parallel if gcol.size >= PARALLEL_MIN_SIZE else _col2im_serial
    run(gcol, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow, gx)
    return gx


# ==== CUDA (cuda/conv.cu) ====
# im2col: one thread per output column (n, y, x) and channel c (grid.y); it writes that column's
# kh*kw rows, so consecutive threads write consecutive addresses. col2im: a gather, one thread per
# input pixel (n, h, w) and channel c summing the col entries of every window that covers it --
# each output written once, in a fixed order: no atomics, deterministic.

def cuda_im2col(x, window, out=None):
    w, cp = window, _cuda.cupy()
    x = _cuda.contiguous(x)
    N, C, H, W = x.shape
    col = _out("im2col", out, (C * w.kh * w.kw, N * w.oh * w.ow), x.dtype, cp)
    _cuda.launch("conv", "im2col_kernel", x.dtype, N * w.oh * w.ow,
                 (x, col) + _cuda.i32(N, C, H, W, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow), grid_y=C)
    return col


def cuda_col2im(gcol, x_shape, window, out=None):
    w, cp = window, _cuda.cupy()
    gcol = _cuda.contiguous(gcol)
    _check_col(gcol, x_shape, w)
    N, C, H, W = (int(v) for v in x_shape)
    gx = _out("col2im", out, (N, C, H, W), gcol.dtype, cp)
    _cuda.launch("conv", "col2im_kernel", gcol.dtype, N * H * W,
                 (gcol, gx) + _cuda.i32(N, C, H, W, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow), grid_y=C)
    return gx


# ==== 1x1 convolution, stride 1, no padding, one group, on the GPU: no im2col ====
# x (N, C, H, W) already is N matrices (C, H*W), the col of each sample, so the convolution is a
# batched matrix multiply (K, C) @ (N, C, P) straight into y's layout (N, K, P): no im2col copy, no
# (K, N*P) -> (N, K, P) transpose, no col2im. ResNet's bottlenecks, GoogLeNet's and NiN's
# reductions are such convolutions. Only where it pays:
# - on the GPU (cuBLAS batched GEMMs; memory passes cost more than launches). On the CPU OpenBLAS
#   runs one (K, C) @ (C, N*P) GEMM 2-5x faster than N per-sample ones (measured on 2 cores), so
#   the CPU keeps im2col (for 1x1 a plain transposing copy) + one GEMM;
# - for P = H*W >= POINTWISE_MIN_P: with 7x7 planes the per-sample GEMMs get too thin.
# The weight stays 2-D: NumPy's matmul leaves BLAS for a 3-D weight broadcast against a 4-D input.
POINTWISE_MIN_P = 128
POINTWISE_ON_CPU = False  # tests switch it on to check the same code on NumPy


def is_pointwise(xp, window, groups):
    w = window
    return (w.kh == w.kw == 1 and w.sh == w.sw == 1 and w.ph == w.pw == 0 and groups == 1
            and w.oh * w.ow >= POINTWISE_MIN_P and (xp is not np or POINTWISE_ON_CPU))


def pointwise_forward(xp, x, w, b):
    """x (N, C, H, W), w (K, C, 1, 1), b (K,) or None -> y (N, K, H, W) by one batched GEMM."""
    N, C, H, W = x.shape
    K = w.shape[0]
    y = xp.matmul(w.reshape(K, C), x.reshape(N, C, H * W)).reshape(N, K, H, W)
    if b is not None:
        y += b.reshape(K, 1, 1)
    return y


def pointwise_backward(xp, x, w, gy, need_gx, need_gw, need_gb):
    """-> gx, gw, gb (None where not needed) of pointwise_forward."""
    N, C, H, W = x.shape
    K, P = w.shape[0], H * W
    w2, gy3, x3 = w.reshape(K, C), gy.reshape(N, K, P), x.reshape(N, C, P)
    gx = gw = gb = None
    if need_gx:
        gx = xp.matmul(xp.ascontiguousarray(w2.T), gy3).reshape(x.shape)   # W.T @ gy, batched
    if need_gw:
        # gW = sum over n of gy[n] @ x[n].T: a batched product then a sum over n, unless that
        # (N, K, C) temporary is larger than gy and x themselves; then transpose both into
        # (K, N*P), (C, N*P) and make it one GEMM.
        # (CuPy copies a transposed operand of a batched matmul: transpose the smaller of gy and x.)
        if K * C <= (K + C) * P:
            if C <= K:
                gw = xp.matmul(gy3, x3.transpose(0, 2, 1)).sum(axis=0)
            else:
                gw = xp.matmul(x3, gy3.transpose(0, 2, 1)).sum(axis=0).T
        else:
            gyT = xp.ascontiguousarray(gy3.transpose(1, 0, 2)).reshape(K, N * P)
            xT = xp.ascontiguousarray(x3.transpose(1, 0, 2)).reshape(C, N * P)
            gw = gyT @ xT.T
        gw = gw.reshape(w.shape)
    if need_gb:
        gb = gy3.sum(axis=2).sum(axis=0)
    return gx, gw, gb
