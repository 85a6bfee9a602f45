"""CPU kernels in Numba (compiled with cache=True; parallel where it pays). Same names and
signatures as minidl/kernels/gpu.py; plain NumPy versions of each live in reference.py.

Conventions shared by cpu.py, gpu.py and reference.py:
  im2col(x, kh, kw, sh, sw, ph, pw) -> col (C*kh*kw, N*oh*ow); rows ordered (c, i, j), columns (n, y, x)
  col2im(col, x_shape, kh, kw, sh, sw, ph, pw) -> x (N, C, H, W), overlapping windows summed
  max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y (N, C, oh, ow), argmax int32 (flat h*W+w in the input plane)
  max_pool_backward(gy, argmax, x_shape) -> gx
  avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y      (padding counted in the divisor, as PyTorch)
  avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw) -> gx
  lrn_forward(x, size, alpha, beta, k) -> y, scale             (scale = k + alpha * windowed sum of x^2)
  lrn_backward(x, y, scale, gy, size, alpha, beta, k) -> gx
"""
import math

import numba
import numpy as np

# ==== convolution: im2col / col2im ====

# ==== pooling and local response normalisation ====
# Each public function reshapes (N, C, ...) to planes (N*C, ...) and hands them to a Numba loop that
# runs one plane per thread (numba.prange): planes never share outputs, so no atomics are needed.


def _planes(x):
    n, c = x.shape[:2]
    return np.ascontiguousarray(x).reshape((n * c,) + x.shape[2:])


@numba.njit(cache=True, parallel=True)
def _max_pool_fwd(x, kh, kw, sh, sw, ph, pw, y, argmax):
    P, H, W = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for i in range(oh):
            h0 = max(i * sh - ph, 0)  # padding is never a candidate: clip the window to the input
            h1 = min(i * sh - ph + kh, H)
            for j in range(ow):
                w0 = max(j * sw - pw, 0)
                w1 = min(j * sw - pw + kw, W)
                best = x[p, h0, w0]
                where = h0 * W + w0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = x[p, h, w]
                        if v > best or (v != v and best == best):  # the first NaN wins, as np.argmax
                            best = v
                            where = h * W + w
                y[p, i, j] = best
                argmax[p, i, j] = where


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow), argmax int32 (N, C, oh, ow): flat h*W+w of each max."""
    n, c, h, w = x.shape
    xs = _planes(x)
    y = np.empty((n * c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n * c, oh, ow), dtype=np.int32)
    _max_pool_fwd(xs, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), y, argmax)
    return y.reshape(n, c, oh, ow), argmax.reshape(n, c, oh, ow)


@numba.njit(cache=True, parallel=True)
def _max_pool_bwd(gy, argmax, gx):
    P, L = gy.shape
    for p in numba.prange(P):
        for q in range(L):
            gx[p, argmax[p, q]] += gy[p, q]  # +=: overlapping windows can pick the same input


def max_pool_backward(gy, argmax, x_shape):
    """gy (N, C, oh, ow), argmax from max_pool_forward -> gx (N, C, H, W); each gy goes to its switch."""
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    _max_pool_bwd(_planes(gy).reshape(n * c, -1), _planes(argmax).reshape(n * c, -1), gx)
    return gx.reshape(x_shape)


@numba.njit(cache=True, parallel=True)
def _avg_pool_fwd(x, kh, kw, sh, sw, ph, pw, y):
    P, H, W = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in numba.prange(P):
        for i in range(oh):
            h0 = i * sh - ph
            h1 = min(h0 + kh, H + ph)  # the divisor counts padding but not what lies past it (ceil mode)
            dh = h1 - h0
            h0, h1 = max(h0, 0), min(h1, H)
            for j in range(ow):
                w0 = j * sw - pw
                w1 = min(w0 + kw, W + pw)
                dw = w1 - w0
                w0, w1 = max(w0, 0), min(w1, W)
                acc = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        acc += x[p, h, w]
                y[p, i, j] = acc / (dh * dw)


def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow): window sums over PyTorch's divisor (padding counted)."""
    n, c, h, w = x.shape
    y = np.empty((n * c, oh, ow), dtype=x.dtype)
    _avg_pool_fwd(_planes(x), int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), y)
    return y.reshape(n, c, oh, ow)


@numba.njit(cache=True, parallel=True)
def _avg_pool_bwd(gy, kh, kw, sh, sw, ph, pw, gx):
    P, H, W = gx.shape
    oh, ow = gy.shape[1], gy.shape[2]
    for p in numba.prange(P):
        for i in range(oh):
            h0 = i * sh - ph
            h1 = min(h0 + kh, H + ph)
            dh = h1 - h0
            h0, h1 = max(h0, 0), min(h1, H)
            for j in range(ow):
                w0 = j * sw - pw
                w1 = min(w0 + kw, W + pw)
                dw = w1 - w0
                w0, w1 = max(w0, 0), min(w1, W)
                g = gy[p, i, j] / (dh * dw)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        gx[p, h, w] += g


def avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw):
    """gy (N, C, oh, ow) -> gx (N, C, H, W): each gy spread evenly over its window."""
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h, w), dtype=gy.dtype)
    _avg_pool_bwd(_planes(gy), int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), gx)
    return gx.reshape(x_shape)


@numba.njit(cache=True, inline="always")
def _pow_neg(s, beta):
    """s ** -beta; AlexNet's beta = 0.75 as two square roots, several times faster than pow."""
    if beta == 0.75:
        return 1.0 / math.sqrt(s * math.sqrt(s))
    return s ** -beta


@numba.njit(cache=True, parallel=True)
def _lrn_fwd(x, size, alpha, beta, k, y, scale):
    N, C, L = x.shape
    before, after = size // 2, (size - 1) // 2  # channels c - size//2 ... c + (size-1)//2, as PyTorch
    for q in numba.prange(N * C):
        n, c = q // C, q % C
        s = scale[n, c]
        s[:] = 0
        for cc in range(max(c - before, 0), min(c + after, C - 1) + 1):
            for l in range(L):
                s[l] += x[n, cc, l] * x[n, cc, l]
        for l in range(L):
            s[l] = k + alpha * s[l]
            y[n, c, l] = x[n, c, l] * _pow_neg(s[l], beta)


def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> y, scale (both N, C, H, W); scale = k + alpha * sum of x^2 over the window."""
    n, c = x.shape[:2]
    xs = np.ascontiguousarray(x).reshape(n, c, -1)
    y = np.empty_like(xs)
    scale = np.empty_like(xs)
    t = x.dtype.type  # constants in the array's dtype keep float32 arithmetic in float32
    _lrn_fwd(xs, int(size), t(alpha), t(beta), t(k), y, scale)
    return y.reshape(x.shape), scale.reshape(x.shape)


@numba.njit(cache=True, parallel=True)
def _lrn_bwd(x, y, scale, gy, size, alpha, beta, gx, ratio):
    N, C, L = x.shape
    before, after = size // 2, (size - 1) // 2
    for q in numba.prange(N * C):
        n, c = q // C, q % C
        for l in range(L):
            ratio[n, c, l] = gy[n, c, l] * y[n, c, l] / scale[n, c, l]
    for q in numba.prange(N * C):
        n, c = q // C, q % C
        g = gx[n, c]
        g[:] = 0
        # input channel c sits in the windows of outputs c - after ... c + before
        for cc in range(max(c - after, 0), min(c + before, C - 1) + 1):
            for l in range(L):
                g[l] += ratio[n, cc, l]
        for l in range(L):
            g[l] = gy[n, c, l] * _pow_neg(scale[n, c, l], beta) - 2 * alpha * beta * x[n, c, l] * g[l]


def lrn_backward(x, y, scale, gy, size, alpha, beta, k):
    """gx = gy * scale^-beta - 2*alpha*beta * x * sum over the windows containing c of gy*y/scale."""
    n, c = x.shape[:2]
    flat = [np.ascontiguousarray(a).reshape(n, c, -1) for a in (x, y, scale, gy)]
    gx = np.empty_like(flat[0])
    ratio = np.empty_like(flat[0])
    t = x.dtype.type
    _lrn_bwd(*flat, int(size), t(alpha), t(beta), gx, ratio)
    return gx.reshape(x.shape)
