"""CPU kernels in Numba (compiled with cache=True; parallel where it pays). Same names and
signatures as minidl/kernels/gpu.py; plain NumPy versions of each live in reference.py.

Conventions shared by cpu.py, gpu.py and reference.py:
  im2col(x, kh, kw, sh, sw, ph, pw, out=None) -> col (C*kh*kw, N*oh*ow); rows ordered (c, i, j), columns (n, y, x)
  col2im(col, x_shape, kh, kw, sh, sw, ph, pw, out=None) -> x (N, C, H, W), overlapping windows summed
    (out: optional preallocated C-contiguous result to write into and return, so a caller can reuse
    big buffers; on the CPU conv2d passes it, since NumPy returns big blocks to the OS when freed)
  max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y (N, C, oh, ow), argmax int32 (flat h*W+w in the input plane)
  max_pool_backward(gy, argmax, x_shape) -> gx
  avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y      (padding counted in the divisor, as PyTorch)
  avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw) -> gx
  lrn_forward(x, size, alpha, beta, k) -> y, scale             (scale = k + alpha * windowed sum of x^2)
  lrn_backward(x, y, scale, gy, size, alpha, beta, k) -> gx
  relu_forward(x) -> y, saved;  relu_backward(saved, gy) -> gx   (gy where x > 0)
  sgd_update(p, g, v, lr, momentum, weight_decay, nesterov) -> v   (p updated in place)
  batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps) -> y, saved
  batch_norm_backward(gy, saved, weight, training, need_gb=True) -> gx, gweight, gbias
    (x, gy as (N, C, L); ``saved`` is whatever that backend's forward returned)
"""
import math

import numba
import numpy as np
from numba import uint64 as u64

# ReLU backward, SGD and batch norm are whole-array NumPy expressions: the reference versions
# serve as they are (gpu.py fuses each into one or a few kernels).
from minidl.kernels.reference import batch_norm_backward, batch_norm_forward, sgd_update  # noqa: E402,F401

# ==== convolution: im2col / col2im ====
# im2col runs one col row (c, i, j) per thread and col2im one channel c per thread (numba.prange):
# each thread then streams through whole contiguous rows of the big col buffer (measured ~1.5-2x
# faster than one (n, c) plane per thread, which interleaves kh*kw write streams), and no two
# threads write the same element, so no atomics are needed. Padding is never materialised: each
# output row is split into a zero part (window in the padding) and a copied part (in the input).


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


@numba.njit(cache=True, inline="always")
def _valid_columns(j, sw, pw, W, ow):
    """Output columns x whose input column x*sw - pw + j lies in [0, W): the range lo <= x < hi."""
    hi = min(ow, max(0, (W - 1 + pw - j) // sw + 1))
    lo = min(hi, max(0, (pw - j + sw - 1) // sw))
    return lo, hi


@numba.njit(cache=True, inline="always")
def _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r):
    """Fill row r = (c, i, j) of col: x[n, c, y*sh - ph + i, x*sw - pw + j] for every (n, y, x).

    Indices are unsigned (u64): Numba then drops its negative-index test from the inner loops,
    which made these copies of a few dozen floats 2x faster. All of them are >= 0 by construction.
    """
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


@numba.njit(cache=True, parallel=True)
def _im2col_parallel(x, kh, kw, sh, sw, ph, pw, oh, ow, col):
    for r in numba.prange(col.shape[0]):
        _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r)


@numba.njit(cache=True)
def _im2col_serial(x, kh, kw, sh, sw, ph, pw, oh, ow, col):
    for r in range(col.shape[0]):
        _im2col_row(x, kh, kw, sh, sw, ph, pw, oh, ow, col, r)


# Below this many elements waking the thread pool costs more than the copy itself (~1 ms per call
# on a busy 2-core machine, which made tiny gradient checks crawl), so small calls run serially.
PARALLEL_MIN_SIZE = 1 << 16


def im2col(x, kh, kw, sh, sw, ph, pw, out=None):
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow); col[(c,i,j), (n,y,x)] = x[n, c, y*sh-ph+i, x*sw-pw+j] (0 in the padding).

    out: optional C-contiguous array of that shape and dtype to write into (lets a caller reuse a big buffer).
    """
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    oh, ow = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    shape = (C * kh * kw, N * oh * ow)
    col = np.empty(shape, dtype=x.dtype) if out is None else _check_out("im2col", out, shape, x.dtype)
    run = _im2col_parallel if col.size >= PARALLEL_MIN_SIZE else _im2col_serial
    run(x, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), oh, ow, col)
    return col


@numba.njit(cache=True, inline="always")
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


@numba.njit(cache=True, parallel=True)
def _col2im_parallel(col, kh, kw, sh, sw, ph, pw, oh, ow, x):
    for c in numba.prange(x.shape[1]):
        _col2im_channel(col, kh, kw, sh, sw, ph, pw, oh, ow, x, c)


@numba.njit(cache=True)
def _col2im_serial(col, kh, kw, sh, sw, ph, pw, oh, ow, x):
    for c in range(x.shape[1]):
        _col2im_channel(col, kh, kw, sh, sw, ph, pw, oh, ow, x, c)


def col2im(col, x_shape, kh, kw, sh, sw, ph, pw, out=None):
    """col (C*kh*kw, N*oh*ow) -> x (N, C, H, W): the adjoint of im2col; overlapping windows are summed.

    out: optional C-contiguous array of shape x_shape and col's dtype to write into.
    """
    col = np.ascontiguousarray(col)
    N, C, H, W = x_shape
    oh, ow = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    if col.shape != (C * kh * kw, N * oh * ow):
        raise ValueError(f"col2im: col has shape {col.shape}, expected {(C * kh * kw, N * oh * ow)} for x_shape "
                         f"{tuple(x_shape)}, kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}")
    x = np.empty(tuple(x_shape), dtype=col.dtype) if out is None else _check_out("col2im", out, tuple(x_shape),
                                                                                   col.dtype)
    run = _col2im_parallel if col.size >= PARALLEL_MIN_SIZE else _col2im_serial
    run(col, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), oh, ow, x)
    return x


def _check_out(op, out, shape, dtype):
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be a C-contiguous {np.dtype(dtype)} array of shape {shape}, "
                         f"got {out.dtype} {out.shape} (contiguous: {out.flags.c_contiguous})")
    return out

# ==== pooling and local response normalisation ====
# Each public function reshapes (N, C, ...) to planes (N*C, ...) and hands them to a Numba loop that
# runs one plane per thread (numba.prange): planes never share outputs, so no atomics are needed.


def _planes(x):
    n, c = x.shape[:2]
    return np.ascontiguousarray(x).reshape((n * c,) + x.shape[2:])


# Below this many element-operations a job runs on one thread: waking the pool's other threads
# costs microseconds when idle and milliseconds on a busy machine, more than a small job takes.
SERIAL_BELOW = 1 << 15


def _run(kernel, work, *args):
    """Call a parallel Numba kernel, on a single thread when ``work`` is too small to share."""
    if work >= SERIAL_BELOW:
        return kernel(*args)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


@numba.njit(cache=True, parallel=True)
def _max_pool_fwd(x, kh, kw, sh, sw, ph, pw, y, argmax):
    P, H, W = x.shape
    oh, ow = y.shape[1], y.shape[2]
    xf, yf, af = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
    uW = u64(W)
    for p in numba.prange(P):
        base = u64(p) * u64(H * W)           # unsigned indices: Numba then skips its wraparound test
        out = u64(p) * u64(oh * ow)
        for i in range(oh):
            h0 = u64(max(i * sh - ph, 0))    # padding is never a candidate: clip the window to the input
            h1 = u64(min(i * sh - ph + kh, H))
            for j in range(ow):
                w0 = u64(max(j * sw - pw, 0))
                w1 = u64(min(j * sw - pw + kw, W))
                where = h0 * uW + w0
                best = xf[base + where]
                nan = False
                for h in range(h0, h1):
                    row = h * uW
                    for w in range(w0, w1):
                        v = xf[base + row + w]
                        nan |= v != v  # a flag, not a branch: testing NaN inside the `if` halves the speed
                        if v > best:
                            best = v
                            where = row + w
                if nan:  # rare: NaN propagates, the first one wins (as np.argmax); scan back to find it
                    where = _first_nan(xf, base, uW, h0, h1, w0, w1, where)
                    best = xf[base + where]
                yf[out + u64(i * ow + j)] = best
                af[out + u64(i * ow + j)] = where


@numba.njit(cache=True, inline="always")
def _first_nan(xf, base, uW, h0, h1, w0, w1, where):
    """Flat index of the first NaN (row-major) in the window, which holds at least one."""
    for h in range(h0, h1):
        for w in range(w0, w1):
            v = xf[base + h * uW + w]
            if v != v:
                return h * uW + w
    return where


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow), argmax int32 (N, C, oh, ow): flat h*W+w of each max."""
    n, c, h, w = x.shape
    xs = _planes(x)
    y = np.empty((n * c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n * c, oh, ow), dtype=np.int32)
    _run(_max_pool_fwd, y.size * kh * kw, xs, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), y, argmax)
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
    _run(_max_pool_bwd, gy.size, _planes(gy).reshape(n * c, -1), _planes(argmax).reshape(n * c, -1), gx)
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
    _run(_avg_pool_fwd, y.size * kh * kw, _planes(x), int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), y)
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
    _run(_avg_pool_bwd, gy.size * kh * kw, _planes(gy), int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), gx)
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
    _run(_lrn_fwd, x.size * (size + 2), xs, int(size), t(alpha), t(beta), t(k), y, scale)
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
    _run(_lrn_bwd, x.size * (size + 4), *flat, int(size), t(alpha), t(beta), gx, ratio)
    return gx.reshape(x.shape)


# ==== ReLU ====
# One pass each way instead of NumPy's two (compare, multiply) plus a temporary: on the CIFAR-10
# net's activations that is most of ReLU's time.


@numba.njit(cache=True, parallel=True)
def _relu_fwd(x, y, mask):
    for i in numba.prange(x.size):
        v = x[i]
        mask[i] = v > 0
        y[i] = 0 if v <= 0 else v  # NaN is neither: it passes through, as x * (x > 0) and PyTorch


@numba.njit(cache=True, parallel=True)
def _relu_bwd(mask, gy, gx):
    for i in numba.prange(gy.size):
        gx[i] = gy[i] if mask[i] else 0


def relu_forward(x):
    """x -> y = max(x, 0), saved = the bool mask x > 0 (same shape)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    y, mask = np.empty_like(xf), np.empty(xf.shape, dtype=np.bool_)
    _run(_relu_fwd, xf.size, xf, y, mask)
    return y.reshape(x.shape), mask.reshape(x.shape)


def relu_backward(saved, gy):
    """gy where x > 0, else 0; ``saved`` from relu_forward."""
    gf = np.ascontiguousarray(gy).reshape(-1)
    gx = np.empty_like(gf)
    _run(_relu_bwd, gf.size, saved.reshape(-1), gf, gx)
    return gx.reshape(gy.shape)
