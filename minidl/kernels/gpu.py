"""GPU kernels in CuPy: one CUDA C++ source, compiled once per dtype (float32, float64) on first use.

Same names and signatures as minidl/kernels/cpu.py (its docstring holds the shared conventions);
the functional ops call ``kernels.of(x).<kernel>(...)`` and never know which one they got.
The GEMMs around these kernels are plain ``cupy.matmul`` calls (cuBLAS).

How the work is split over threads (each kernel is a grid-stride loop, 256 threads a block):
  im2col      one thread per output column (n, y, x) and channel c (grid.y); it writes that
              column's kh*kw rows, so consecutive threads write consecutive addresses.
  col2im      a gather: one thread per input pixel (n, h, w) and channel c sums the col entries
              of every window that covers it -- each output written once, no atomics.
  max pool    forward: one thread per output, window clipped to the input (padding is never
              the max), argmax as flat h*W+w. Backward: one thread per gy element adds it to its
              switch with atomicAdd (the fixed signature carries no window, so no gather; only
              overlapping windows ever collide).
  avg pool    forward: one thread per output; backward: a gather per input pixel, like col2im.
  LRN         one thread per element, looping over its window of ``size`` channels.
This module imports CuPy at import time; minidl.kernels imports it only for cupy arrays.
"""
import functools

import cupy as cp
import numpy as np

_THREADS = 256
_MAX_BLOCKS = 1 << 20    # grid-stride loops cover the rest
_MAX_GRID_Y = 65535

_SOURCE = r"""
// index of an output element in a grid-stride loop
#define GRID_STRIDE_LOOP(idx, total) \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < (total); \
         idx += (long long)blockDim.x * gridDim.x)

// ---- im2col: col[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = x[n, c, y*sh - ph + i, x*sw - pw + j] ----
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ img, T* __restrict__ col,
                              int N, int C, int H, int W, int kh, int kw, int sh, int sw,
                              int ph, int pw, int oh, int ow)
{
    const long long L = (long long)N * oh * ow;           // columns of col
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        GRID_STRIDE_LOOP(q, L) {
            const int xo = (int)(q % ow);
            const long long t = q / ow;
            const int yo = (int)(t % oh);
            const int n = (int)(t / oh);
            const T* plane = img + ((long long)n * C + c) * H * W;
            const int h0 = yo * sh - ph, w0 = xo * sw - pw;
            T* out = col + (long long)c * kh * kw * L + q;
            for (int i = 0; i < kh; ++i) {
                const int h = h0 + i;
                const bool hin = (h >= 0) && (h < H);
                for (int j = 0; j < kw; ++j) {
                    const int w = w0 + j;
                    *out = (hin && w >= 0 && w < W) ? plane[(long long)h * W + w] : (T)0;
                    out += L;
                }
            }
        }
    }
}

// ---- col2im (gather): x[n, c, h, w] = sum over windows (y, x) covering (h, w) of col ----
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, T* __restrict__ img,
                              int N, int C, int H, int W, int kh, int kw, int sh, int sw,
                              int ph, int pw, int oh, int ow)
{
    const long long L = (long long)N * oh * ow;
    const long long HW = (long long)H * W;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        GRID_STRIDE_LOOP(p, (long long)N * HW) {
            const int n = (int)(p / HW);
            const long long r = p - n * HW;
            const int h = (int)(r / W), w = (int)(r % W);
            const int hp = h + ph, wp = w + pw;
            // windows y with 0 <= hp - y*sh < kh, 0 <= y < oh (likewise x)
            const int y0 = hp >= kh ? (hp - kh) / sh + 1 : 0;
            const int y1 = min(hp / sh + 1, oh);
            const int x0 = wp >= kw ? (wp - kw) / sw + 1 : 0;
            const int x1 = min(wp / sw + 1, ow);
            T acc = 0;
            for (int y = y0; y < y1; ++y) {
                const int i = hp - y * sh;
                for (int x = x0; x < x1; ++x) {
                    const int j = wp - x * sw;
                    acc += col[((long long)(c * kh + i) * kw + j) * L + ((long long)n * oh + y) * ow + x];
                }
            }
            img[((long long)n * C + c) * HW + r] = acc;
        }
    }
}

// ---- max pooling: forward with switches (argmax = flat h*W + w in the plane) ----
template <typename T>
__global__ void max_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
                                    long long total, int H, int W, int kh, int kw, int sh, int sw,
                                    int ph, int pw, int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int j = (int)(idx % ow);
        const long long t = idx / ow;
        const int i = (int)(t % oh);
        const long long p = t / oh;
        const T* plane = x + p * H * W;
        const int h0 = max(i * sh - ph, 0), h1 = min(i * sh - ph + kh, H);
        const int w0 = max(j * sw - pw, 0), w1 = min(j * sw - pw + kw, W);
        T best = plane[h0 * W + w0];
        int where = h0 * W + w0;
        for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) {
                const T v = plane[h * W + w];
                if (v > best || (v != v && best == best)) {   // the first NaN wins, as np.argmax
                    best = v;
                    where = h * W + w;
                }
            }
        }
        y[idx] = best;
        argmax[idx] = where;
    }
}

// ---- max pooling backward: each gy goes to its switch (overlapping windows may collide) ----
template <typename T>
__global__ void max_pool_bwd_kernel(const T* __restrict__ gy, const int* __restrict__ argmax,
                                    T* __restrict__ gx, long long total, int plane_out, long long plane_in)
{
    GRID_STRIDE_LOOP(idx, total) {
        const long long p = idx / plane_out;
        atomicAdd(gx + p * plane_in + argmax[idx], gy[idx]);
    }
}

// ---- average pooling: PyTorch's divisor (padding counted, nothing past the right padding) ----
template <typename T>
__global__ void avg_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long total,
                                    int H, int W, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int j = (int)(idx % ow);
        const long long t = idx / ow;
        const int i = (int)(t % oh);
        const long long p = t / oh;
        const T* plane = x + p * H * W;
        int h0 = i * sh - ph, h1 = min(h0 + kh, H + ph);
        int w0 = j * sw - pw, w1 = min(w0 + kw, W + pw);
        const int area = (h1 - h0) * (w1 - w0);
        h0 = max(h0, 0); h1 = min(h1, H);
        w0 = max(w0, 0); w1 = min(w1, W);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                acc += plane[h * W + w];
        y[idx] = acc / (T)area;
    }
}

template <typename T>
__global__ void avg_pool_bwd_kernel(const T* __restrict__ gy, T* __restrict__ gx, long long total,
                                    int H, int W, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int w = (int)(idx % W);
        const long long t = idx / W;
        const int h = (int)(t % H);
        const long long p = t / H;
        const T* g = gy + p * oh * ow;
        const int hp = h + ph, wp = w + pw;
        const int i0 = hp >= kh ? (hp - kh) / sh + 1 : 0;
        const int i1 = min(hp / sh + 1, oh);
        const int j0 = wp >= kw ? (wp - kw) / sw + 1 : 0;
        const int j1 = min(wp / sw + 1, ow);
        T acc = 0;
        for (int i = i0; i < i1; ++i) {
            const int a0 = i * sh - ph;
            const int dh = min(a0 + kh, H + ph) - a0;
            for (int j = j0; j < j1; ++j) {
                const int b0 = j * sw - pw;
                const int dw = min(b0 + kw, W + pw) - b0;
                acc += g[i * ow + j] / (T)(dh * dw);
            }
        }
        gx[idx] = acc;
    }
}

// ---- local response normalisation across channels (x viewed as (N, C, L)) ----
template <typename T>
__device__ __forceinline__ T pow_neg(T s, T beta)
{
    // s ** -beta; AlexNet's beta = 0.75 as two square roots, as on the CPU
    if (beta == (T)0.75) return (T)1 / sqrt(s * sqrt(s));
    return pow(s, -beta);
}

template <typename T>
__global__ void lrn_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                               long long total, int C, long long L, int size, T alpha, T beta, T k)
{
    const int before = size / 2, after = (size - 1) / 2;   // channels c - size//2 ... c + (size-1)//2
    GRID_STRIDE_LOOP(idx, total) {
        const long long l = idx % L;
        const long long t = idx / L;
        const int c = (int)(t % C);
        const long long base = (t - c) * L + l;            // element (n, 0, l)
        const int c0 = max(c - before, 0), c1 = min(c + after, C - 1);
        T acc = 0;
        for (int cc = c0; cc <= c1; ++cc) {
            const T v = x[base + cc * L];
            acc += v * v;
        }
        const T s = k + alpha * acc;
        scale[idx] = s;
        y[idx] = x[idx] * pow_neg(s, beta);
    }
}

template <typename T>
__global__ void lrn_bwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ scale,
                               const T* __restrict__ gy, T* __restrict__ gx,
                               long long total, int C, long long L, int size, T alpha, T beta)
{
    const int before = size / 2, after = (size - 1) / 2;
    GRID_STRIDE_LOOP(idx, total) {
        const long long l = idx % L;
        const long long t = idx / L;
        const int c = (int)(t % C);
        const long long base = (t - c) * L + l;
        // input channel c lies in the windows of outputs c - after ... c + before
        const int c0 = max(c - after, 0), c1 = min(c + before, C - 1);
        T acc = 0;
        for (int cc = c0; cc <= c1; ++cc) {
            const long long e = base + cc * L;
            acc += gy[e] * y[e] / scale[e];
        }
        gx[idx] = gy[idx] * pow_neg(scale[idx], beta) - (T)2 * alpha * beta * x[idx] * acc;
    }
}
"""

_KERNELS = ("im2col_kernel", "col2im_kernel", "max_pool_fwd_kernel", "max_pool_bwd_kernel",
            "avg_pool_fwd_kernel", "avg_pool_bwd_kernel", "lrn_fwd_kernel", "lrn_bwd_kernel")
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _name_expressions():
    return [f"{k}<{t}>" for k in _KERNELS for t in _CTYPES.values()]


@functools.lru_cache(maxsize=None)
def _module():
    """The RawModule holding every kernel; NVRTC compiles it once, on the first get_function."""
    return cp.RawModule(code=_SOURCE, options=("--std=c++14",), name_expressions=_name_expressions())


@functools.lru_cache(maxsize=None)
def _kernel(name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in _CTYPES:
        raise TypeError(f"{name}: GPU kernels support float32 and float64, got {dtype}")
    return _module().get_function(f"{name}<{_CTYPES[dtype]}>")


def _launch(name, dtype, total, args, grid_y=1):
    if total <= 0:
        return
    blocks = int(min((total + _THREADS - 1) // _THREADS, _MAX_BLOCKS))
    _kernel(name, dtype)((blocks, int(min(max(grid_y, 1), _MAX_GRID_Y)), 1), (_THREADS, 1, 1), args)


def _i32(*values):
    return tuple(np.int32(v) for v in values)


def _contiguous(a):
    return cp.ascontiguousarray(a)


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _check_out(op, out, shape, dtype):
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be a C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, "
                         f"got {out.dtype} {out.shape} (contiguous: {out.flags.c_contiguous})")
    return out


# ==== convolution: im2col / col2im ====

def im2col(x, kh, kw, sh, sw, ph, pw, out=None):
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow); col[(c,i,j), (n,y,x)] = x[n, c, y*sh-ph+i, x*sw-pw+j] (0 in the padding).

    out: optional C-contiguous cupy array of that shape and dtype to write into.
    """
    x = _contiguous(x)
    N, C, H, W = x.shape
    oh, ow = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    shape = (C * kh * kw, N * oh * ow)
    col = cp.empty(shape, dtype=x.dtype) if out is None else _check_out("im2col", out, shape, x.dtype)
    _launch("im2col_kernel", x.dtype, N * oh * ow,
            (x, col) + _i32(N, C, H, W, kh, kw, sh, sw, ph, pw, oh, ow), grid_y=C)
    return col


def col2im(col, x_shape, kh, kw, sh, sw, ph, pw, out=None):
    """col (C*kh*kw, N*oh*ow) -> x (N, C, H, W): the adjoint of im2col; overlapping windows are summed.

    out: optional C-contiguous cupy array of shape x_shape and col's dtype to write into.
    """
    col = _contiguous(col)
    N, C, H, W = (int(v) for v in x_shape)
    oh, ow = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    if col.shape != (C * kh * kw, N * oh * ow):
        raise ValueError(f"col2im: col has shape {col.shape}, expected {(C * kh * kw, N * oh * ow)} for x_shape "
                         f"{tuple(x_shape)}, kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}")
    shape = (N, C, H, W)
    x = cp.empty(shape, dtype=col.dtype) if out is None else _check_out("col2im", out, shape, col.dtype)
    _launch("col2im_kernel", col.dtype, N * H * W,
            (col, x) + _i32(N, C, H, W, kh, kw, sh, sw, ph, pw, oh, ow), grid_y=C)
    return x


# ==== pooling and local response normalisation ====

def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow), argmax int32 (N, C, oh, ow): flat h*W+w of each max."""
    x = _contiguous(x)
    n, c, h, w = x.shape
    y = cp.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = cp.empty((n, c, oh, ow), dtype=np.int32)
    _launch("max_pool_fwd_kernel", x.dtype, y.size,
            (x, y, argmax, np.int64(y.size)) + _i32(h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return y, argmax


def max_pool_backward(gy, argmax, x_shape):
    """gy (N, C, oh, ow), argmax from max_pool_forward -> gx (N, C, H, W); each gy goes to its switch."""
    gy = _contiguous(gy)
    argmax = _contiguous(argmax).astype(np.int32, copy=False)
    n, c, h, w = (int(v) for v in x_shape)
    gx = cp.zeros((n, c, h, w), dtype=gy.dtype)
    plane_out = gy.shape[2] * gy.shape[3]
    _launch("max_pool_bwd_kernel", gy.dtype, gy.size,
            (gy, argmax, gx, np.int64(gy.size), np.int32(plane_out), np.int64(h * w)))
    return gx


def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow): window sums over PyTorch's divisor (padding counted)."""
    x = _contiguous(x)
    n, c, h, w = x.shape
    y = cp.empty((n, c, oh, ow), dtype=x.dtype)
    _launch("avg_pool_fwd_kernel", x.dtype, y.size,
            (x, y, np.int64(y.size)) + _i32(h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return y


def avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw):
    """gy (N, C, oh, ow) -> gx (N, C, H, W): each gy spread evenly over its window (a gather per input)."""
    gy = _contiguous(gy)
    n, c, h, w = (int(v) for v in x_shape)
    oh, ow = gy.shape[2], gy.shape[3]
    gx = cp.empty((n, c, h, w), dtype=gy.dtype)
    _launch("avg_pool_bwd_kernel", gy.dtype, gx.size,
            (gy, gx, np.int64(gx.size)) + _i32(h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return gx


def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> y, scale (both N, C, H, W); scale = k + alpha * sum of x^2 over the window."""
    x = _contiguous(x)
    n, c = x.shape[:2]
    L = x.size // (n * c) if x.size else 0
    y = cp.empty_like(x)
    scale = cp.empty_like(x)
    t = x.dtype.type  # constants in the array's dtype keep float32 arithmetic in float32
    _launch("lrn_fwd_kernel", x.dtype, x.size,
            (x, y, scale, np.int64(x.size), np.int32(c), np.int64(L), np.int32(size), t(alpha), t(beta), t(k)))
    return y, scale


def lrn_backward(x, y, scale, gy, size, alpha, beta, k):
    """gx = gy * scale^-beta - 2*alpha*beta * x * sum over the windows containing c of gy*y/scale."""
    x, y, scale, gy = (_contiguous(a) for a in (x, y, scale, gy))
    n, c = x.shape[:2]
    L = x.size // (n * c) if x.size else 0
    gx = cp.empty_like(x)
    t = x.dtype.type
    _launch("lrn_bwd_kernel", x.dtype, x.size,
            (x, y, scale, gy, gx, np.int64(x.size), np.int32(c), np.int64(L), np.int32(size), t(alpha), t(beta)))
    return gx


def compile_all():
    """Compile every kernel for both dtypes now (a clear error up front instead of at first use)."""
    for name in _KERNELS:
        for dtype in _CTYPES:
            _kernel(name, dtype)
