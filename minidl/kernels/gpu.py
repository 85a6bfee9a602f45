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
  ReLU        one thread per 8 elements q, q+Q, ..., q+7Q (coalesced): forward writes y and one
              byte of the bit mask x > 0
              (what backward keeps: 1/32 of x instead of a bool mask's 1/4).
  SGD         one thread per element: weight decay, momentum buffer and update in one pass.
  batch norm  channel c on grid.y, plane positions on grid.x, each thread looping over n:
              per-channel sums in double (atomicAdd, one per thread), a C-thread kernel for
              the statistics (and running buffers), one elementwise pass -- forward 3
              kernels, backward 3, instead of a dozen array expressions.
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

// ---- ReLU: forward writes y and a bit mask (1 bit per element, 8 to a byte); backward reads it ----
// Byte q holds elements q, q + Q, ..., q + 7Q (Q = number of bytes): thread q touches those 8, so
// each of its 8 loads and stores is coalesced across the warp.
template <typename T>
__global__ void relu_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, unsigned char* __restrict__ bits,
                                long long total)
{
    const long long Q = (total + 7) / 8;
    GRID_STRIDE_LOOP(q, Q) {
        unsigned int b = 0;
        for (int j = 0; j < 8; ++j) {
            const long long i = q + j * Q;
            if (i < total) {
                const T v = x[i];
                const bool pos = v > (T)0;
                y[i] = (pos || v != v) ? v : (T)0;     // NaN stays NaN, as x * (x > 0) does
                b |= (unsigned int)pos << j;
            }
        }
        bits[q] = (unsigned char)b;
    }
}

template <typename T>
__global__ void relu_bwd_kernel(const unsigned char* __restrict__ bits, const T* __restrict__ gy,
                                T* __restrict__ gx, long long total)
{
    const long long Q = (total + 7) / 8;
    GRID_STRIDE_LOOP(q, Q) {
        const unsigned int b = bits[q];
        for (int j = 0; j < 8; ++j) {
            const long long i = q + j * Q;
            if (i < total)
                gx[i] = ((b >> j) & 1u) ? gy[i] : (T)0;
        }
    }
}

// ---- SGD, one pass per parameter: weight decay, momentum (PyTorch's form), Nesterov, update ----
// mode bits: 1 momentum, 2 first step (the buffer starts as the gradient), 4 Nesterov
template <typename T>
__global__ void sgd_kernel(T* p, const T* g, T* v, long long total, T lr, T mu, T wd, int mode)
{
    GRID_STRIDE_LOOP(i, total) {
        T d = g[i];
        if (wd != (T)0) d = d + wd * p[i];
        if (mode & 1) {
            const T vi = (mode & 2) ? d : mu * v[i] + d;
            v[i] = vi;
            d = (mode & 4) ? d + mu * vi : vi;
        }
        p[i] = p[i] - lr * d;
    }
}

// ---- batch normalisation, x viewed as (N, C, L) ----
// Every kernel below runs channel c = blockIdx.y (grid-stride over C) and, for each sample n, the
// positions l of the plane (n, c) over grid.x: consecutive threads read consecutive addresses and
// no thread divides an index. Per-channel sums are accumulated in double, one atomicAdd per
// thread and sum (no shared memory).
//   mode 0 (forward):  sums[2c] += x - x[0, c, 0],  sums[2c+1] += (x - x[0, c, 0])^2
//                      (shifted by the channel's first value, so var = E[u^2] - E[u]^2 does not cancel)
//   mode 1 (backward): sums[2c] += gy,              sums[2c+1] += gy * (x - mean[c])
// a = x (mode 0) or gy (mode 1); b = x (mode 1); the shift of channel c is center[c * center_stride].
template <typename T>
__global__ void bn_sums_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ center,
                               long long center_stride, double* sums, int mode, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const double mu = (double)center[c * center_stride];
        double s1 = 0, s2 = 0;
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step) {
                if (mode == 0) {
                    const double u = (double)a[base + l] - mu;
                    s1 += u;
                    s2 += u * u;
                } else {
                    const double g = (double)a[base + l];
                    s1 += g;
                    s2 += g * ((double)b[base + l] - mu);
                }
            }
        }
        if (first < L) {
            atomicAdd(sums + 2 * c, s1);
            atomicAdd(sums + 2 * c + 1, s2);
        }
    }
}

// Per-channel statistics into stats (3, C): mean, inv_std = 1/sqrt(var + eps), biased var.
// mode 0: from the sums of bn_sums_kernel (m values per channel); with update, the running
// buffers move towards them (the variance unbiased, m / (m - 1)). mode 1 (eval): from the buffers.
template <typename T>
__global__ void bn_stats_kernel(const double* __restrict__ sums, const T* __restrict__ center,
                                long long center_stride, T* __restrict__ stats, T* running_mean,
                                T* running_var, int C, long long m, double eps, double momentum,
                                int mode, int update)
{
    GRID_STRIDE_LOOP(c, C) {
        double mean, var;
        if (mode == 1) {
            mean = (double)running_mean[c];
            var = (double)running_var[c];
        } else {
            const double d = sums[2 * c] / (double)m;
            mean = (double)center[c * center_stride] + d;
            var = sums[2 * c + 1] / (double)m - d * d;
            if (var < 0) var = 0;
            if (update) {
                running_mean[c] = (T)((1 - momentum) * (double)running_mean[c] + momentum * mean);
                running_var[c] = (T)((1 - momentum) * (double)running_var[c]
                                     + momentum * var * (double)m / (double)(m - 1));
            }
        }
        stats[c] = (T)mean;
        stats[C + c] = (T)(1.0 / sqrt(var + eps));
        stats[2 * C + c] = (T)var;
    }
}

// y = (x - mean[c]) * (inv_std[c] * weight[c]) + bias[c]
template <typename T>
__global__ void bn_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ stats,
                              const T* __restrict__ weight, const T* __restrict__ bias, int has_weight,
                              int has_bias, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T mean = stats[c];
        const T scale = has_weight ? stats[C + c] * weight[c] : stats[C + c];
        const T shift = has_bias ? bias[c] : (T)0;
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step)
                y[base + l] = (x[base + l] - mean) * scale + shift;
        }
    }
}

// From the backward sums (sum gy, sum gy*(x - mean)): the parameter gradients and coef (3, C) of
//   gx = coef[0] * (gy - coef[1]) - (x - mean) * coef[2]
// training: coef = (w*inv_std, mean(gy), w*inv_std^3*mean(gy*(x - mean))); eval: (w*inv_std, 0, 0).
template <typename T>
__global__ void bn_bwd_stats_kernel(const double* __restrict__ sums, const T* __restrict__ stats,
                                    const T* __restrict__ weight, int has_weight, T* __restrict__ coef,
                                    T* __restrict__ gw, T* __restrict__ gb, int C, long long m, int training)
{
    GRID_STRIDE_LOOP(c, C) {
        const double inv_std = (double)stats[C + c];
        const double w = has_weight ? (double)weight[c] : 1.0;
        const double s1 = sums[2 * c], s2 = sums[2 * c + 1];
        gw[c] = (T)(s2 * inv_std);
        gb[c] = (T)s1;
        coef[c] = (T)(w * inv_std);
        coef[C + c] = training ? (T)(s1 / (double)m) : (T)0;
        coef[2 * C + c] = training ? (T)(w * inv_std * inv_std * inv_std * s2 / (double)m) : (T)0;
    }
}

template <typename T>
__global__ void bn_bwd_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ stats,
                              const T* __restrict__ coef, T* __restrict__ gx, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T mean = stats[c], k1 = coef[c], mgy = coef[C + c], k2 = coef[2 * C + c];
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step)
                gx[base + l] = k1 * (gy[base + l] - mgy) - (x[base + l] - mean) * k2;
        }
    }
}
"""

_KERNELS = ("im2col_kernel", "col2im_kernel", "max_pool_fwd_kernel", "max_pool_bwd_kernel",
            "avg_pool_fwd_kernel", "avg_pool_bwd_kernel", "lrn_fwd_kernel", "lrn_bwd_kernel",
            "relu_fwd_kernel", "relu_bwd_kernel", "sgd_kernel", "bn_sums_kernel", "bn_stats_kernel", "bn_fwd_kernel",
            "bn_bwd_stats_kernel", "bn_bwd_kernel")
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


# ==== ReLU backward, SGD and batch norm: fewer passes over memory than the array expressions ====

def relu_forward(x):
    """x -> y = max(x, 0), saved: a bit mask of x > 0, 1 bit per element (a bool mask would take 8).

    Bit j of byte q is element q + j * Q of x (flat), Q = ceil(x.size / 8) the number of bytes.
    """
    if x.dtype not in _CTYPES:   # integer tensors: the array expressions (a bool mask)
        mask = x > 0
        return x * mask, mask
    x = _contiguous(x)
    y = cp.empty_like(x)
    bits = cp.empty((x.size + 7) // 8, dtype=np.uint8)
    _launch("relu_fwd_kernel", x.dtype, bits.size, (x, y, bits, np.int64(x.size)))
    return y, bits


def relu_backward(saved, gy):
    """gy where x > 0, else 0; ``saved`` from relu_forward."""
    if saved.dtype != np.uint8 or gy.dtype not in _CTYPES:
        return gy * saved
    gy = _contiguous(gy)
    gx = cp.empty_like(gy)
    _launch("relu_bwd_kernel", gy.dtype, saved.size, (saved, gy, gx, np.int64(gy.size)))
    return gx


def sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    """In place: p -= lr * d, d = g + weight_decay * p, through the momentum buffer v (PyTorch's form).

    v: the buffer from the previous step, or None on the first (a new one is returned).
    Returns v (None without momentum). One kernel per parameter; non-contiguous or mixed-dtype
    arguments take the array-expression path of minidl.kernels.reference.
    """
    same = all(a is None or (a.dtype == p.dtype and a.shape == p.shape and a.flags.c_contiguous) for a in (p, g, v))
    if not same or p.dtype not in _CTYPES:
        from minidl.kernels import reference
        return reference.sgd_update(p, g, v, lr, momentum, weight_decay, nesterov)
    mode = 0
    if momentum:
        mode |= 1
        if v is None:
            v = cp.empty_like(p)
            mode |= 2
        if nesterov:
            mode |= 4
    t = p.dtype.type
    _launch("sgd_kernel", p.dtype, p.size,
            (p, g, p if v is None else v, np.int64(p.size), t(lr), t(momentum), t(weight_decay), np.int32(mode)))
    return v


def _channels_launch(name, dtype, N, C, L, args, items=1):
    """Grid for the batch-norm kernels: channels on grid.y, plane positions on grid.x (see _SOURCE).

    items: at least this many elements per thread (the sums kernel: fewer atomics)."""
    if N * C * L <= 0:
        return
    blocks = (L + _THREADS - 1) // _THREADS
    if items > 1:
        blocks = min(blocks, max(1, (N * L + _THREADS * items - 1) // (_THREADS * items)))
    blocks = int(max(1, min(blocks, _MAX_BLOCKS)))
    _kernel(name, dtype)((blocks, int(min(C, _MAX_GRID_Y)), 1), (_THREADS, 1, 1), args)


def _vector(a, dtype):
    return cp.ascontiguousarray(a.astype(dtype, copy=False))


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x (N, C, L) -> y (N, C, L), saved: per-channel batch norm (see minidl.functional.norm).

    training: batch statistics (biased variance), running buffers (or None) updated in place with
    the unbiased one; else the running buffers. weight, bias: (C,) or None. ``saved`` goes to
    batch_norm_backward as it is; here it holds x and the (3, C) statistics (mean, inv_std, var).
    """
    x = _contiguous(x)
    N, C, L = (int(v) for v in x.shape)
    dtype = x.dtype
    stats = cp.empty((3, C), dtype=dtype)
    w = _vector(weight, dtype) if weight is not None else stats
    b = _vector(bias, dtype) if bias is not None else stats
    m = N * L
    if training:
        sums = cp.zeros(2 * C, dtype=np.float64)
        _channels_launch("bn_sums_kernel", dtype, N, C, L,
                         (x, x, x, np.int64(L), sums, np.int32(0), np.int32(N), np.int32(C), np.int64(L)), items=128)
        direct = running_mean is not None and all(
            r.dtype == dtype and r.flags.c_contiguous and r.shape == (C,) for r in (running_mean, running_var))
        rm, rv = (running_mean, running_var) if direct else (stats, stats)
        _launch("bn_stats_kernel", dtype, C,
                (sums, x, np.int64(L), stats, rm, rv, np.int32(C), np.int64(m), np.float64(eps),
                 np.float64(momentum), np.int32(0), np.int32(direct)))
        if running_mean is not None and not direct:  # buffers of another dtype or layout: array expressions
            running_mean *= 1 - momentum
            running_mean += (momentum * stats[0]).astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * stats[2] * (m / (m - 1))).astype(running_var.dtype)
    else:
        rm, rv = _vector(running_mean, dtype), _vector(running_var, dtype)
        sums = cp.empty(2, dtype=np.float64)  # not read in mode 1
        _launch("bn_stats_kernel", dtype, C,
                (sums, x, np.int64(0), stats, rm, rv, np.int32(C), np.int64(m), np.float64(eps),
                 np.float64(momentum), np.int32(1), np.int32(0)))
    y = cp.empty_like(x)
    _channels_launch("bn_fwd_kernel", dtype, N, C, L,
                     (x, y, stats, w, b, np.int32(weight is not None), np.int32(bias is not None),
                      np.int32(N), np.int32(C), np.int64(L)))
    return y, (x, stats)


def batch_norm_backward(gy, saved, weight, training, need_gb=True):
    """gy (N, C, L), saved from batch_norm_forward -> gx (N, C, L), gweight (C,) or None, gbias (C,) or None."""
    x, stats = saved
    gy = _contiguous(gy)
    N, C, L = (int(v) for v in x.shape)
    dtype = x.dtype
    sums = cp.zeros(2 * C, dtype=np.float64)
    _channels_launch("bn_sums_kernel", dtype, N, C, L,
                     (gy, x, stats, np.int64(1), sums, np.int32(1), np.int32(N), np.int32(C), np.int64(L)), items=128)
    w = _vector(weight, dtype) if weight is not None else stats
    coef = cp.empty((3, C), dtype=dtype)
    gw = cp.empty(C, dtype=dtype)
    gb = cp.empty(C, dtype=dtype)
    _launch("bn_bwd_stats_kernel", dtype, C,
            (sums, stats, w, np.int32(weight is not None), coef, gw, gb, np.int32(C), np.int64(N * L),
             np.int32(bool(training))))
    gx = cp.empty_like(x)
    _channels_launch("bn_bwd_kernel", dtype, N, C, L, (gy, x, stats, coef, gx, np.int32(N), np.int32(C), np.int64(L)))
    return gx, (gw if weight is not None else None), (gb if need_gb else None)


def compile_all():
    """Compile every kernel for both dtypes now (a clear error up front instead of at first use)."""
    for name in _KERNELS:
        for dtype in _CTYPES:
            _kernel(name, dtype)
