"""The four tile transforms of Winograd convolution (minidl/kernels/winograd.py), on both devices.

Numba kernels over NumPy arrays and CuPy launchers of the CUDA source (cuda/winograd.cu), side by
side; winograd.py holds the matrices, the NumPy reference and the driver that calls these.
"""
import functools
import os

import numpy as np

from minidl.kernels._numba import njit, prange, u64

TILES = (2, 4)  # the tile sizes m of F(m x m, 3 x 3) compiled for the GPU (winograd.TILES)

# ==== Numba kernels: the four tile transforms =========================================================
# The 1-D transforms are B^T, A^T, A and B of the matrices above with the zeros and ones written
# out (the tests check them against ``matrices``): the transforms cost about as much as the GEMMs
# they feed, so generic 6x6 products were not an option.
# Each 2-D transform L X R^T runs as two passes of a 1-D transform, each vectorised over the tiles
# of a tile row: pass 1 along w (one row of every tile of the row at once), pass 2 along h. The
# inner loops then run over tx without branches (padding is copied in first), which LLVM
# vectorises: 2-3x faster than one whole tile at a time (measured single-threaded, input transform).
# _vec applies the 1-D transform ``kind`` (0: B^T, 1: A^T, 2: A, 3: B) to n vectors, flat indices:
#   input k of vector t at src[sb + k*sk + t*st], output j at dst[db + j*dk + t*dt].

@njit(cache=True, inline="always")
def _vec(kind, m, src, sb, sk, st, dst, db, dk, dt, n):
    # unsigned indices (all >= 0): Numba then drops its negative-index test, as in cpu.py
    sb, st, db, dt = u64(sb), u64(st), u64(db), u64(dt)
    s1_, s2_, s3_, s4_, s5_ = u64(sk), u64(2 * sk), u64(3 * sk), u64(4 * sk), u64(5 * sk)
    d1_, d2_, d3_, d4_, d5_ = u64(dk), u64(2 * dk), u64(3 * dk), u64(4 * dk), u64(5 * dk)
    # the constants in the arrays' dtype: Numba types float32 * int as float64, which doubled the
    # arithmetic and kept LLVM from vectorising these loops
    c2, c4, c5, c8 = dst.dtype.type(2), dst.dtype.type(4), dst.dtype.type(5), dst.dtype.type(8)
    for t in range(u64(n)):
        i, o = sb + t * st, db + t * dt
        if kind == 0 and m == 4:      # B^T, 6 -> 6
            s0, s1, s2, s3, s4, s5 = src[i], src[i + s1_], src[i + s2_], src[i + s3_], src[i + s4_], src[i + s5_]
            dst[o] = c4 * s0 - c5 * s2 + s4
            dst[o + d1_] = c4 * (s1 + s2) - s3 - s4
            dst[o + d2_] = c4 * (s2 - s1) + s3 - s4
            dst[o + d3_] = c2 * (s3 - s1) + s4 - s2
            dst[o + d4_] = c2 * (s1 - s3) + s4 - s2
            dst[o + d5_] = c4 * s1 - c5 * s3 + s5
        elif kind == 0:               # B^T, 4 -> 4
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            dst[o] = s0 - s2
            dst[o + d1_] = s1 + s2
            dst[o + d2_] = s2 - s1
            dst[o + d3_] = s3 - s1
        elif kind == 1 and m == 4:    # A^T, 6 -> 4
            s0, s1, s2, s3, s4, s5 = src[i], src[i + s1_], src[i + s2_], src[i + s3_], src[i + s4_], src[i + s5_]
            p1, m1, p2, m2 = s1 + s2, s1 - s2, s3 + s4, s3 - s4
            dst[o] = s0 + p1 + p2
            dst[o + d1_] = m1 + c2 * m2
            dst[o + d2_] = p1 + c4 * p2
            dst[o + d3_] = m1 + c8 * m2 + s5
        elif kind == 1:               # A^T, 4 -> 2
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            dst[o] = s0 + s1 + s2
            dst[o + d1_] = s1 - s2 + s3
        elif kind == 2 and m == 4:    # A, 4 -> 6
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            e, od, e4, o2 = s0 + s2, s1 + s3, s0 + c4 * s2, c2 * s1 + c8 * s3
            dst[o] = s0
            dst[o + d1_] = e + od
            dst[o + d2_] = e - od
            dst[o + d3_] = e4 + o2
            dst[o + d4_] = e4 - o2
            dst[o + d5_] = s3
        elif kind == 2:               # A, 2 -> 4
            s0, s1 = src[i], src[i + s1_]
            dst[o] = s0
            dst[o + d1_] = s0 + s1
            dst[o + d2_] = s0 - s1
            dst[o + d3_] = s1
        elif m == 4:                  # B, 6 -> 6
            s0, s1, s2, s3, s4, s5 = src[i], src[i + s1_], src[i + s2_], src[i + s3_], src[i + s4_], src[i + s5_]
            dst[o] = c4 * s0
            dst[o + d1_] = c4 * (s1 - s2 + s5) + c2 * (s4 - s3)
            dst[o + d2_] = c4 * (s1 + s2) - c5 * s0 - s3 - s4
            dst[o + d3_] = s2 - s1 + c2 * (s3 - s4) - c5 * s5
            dst[o + d4_] = s0 - s1 - s2 + s3 + s4
            dst[o + d5_] = s5
        else:                         # B, 4 -> 4
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            dst[o] = s0
            dst[o + d1_] = s1 - s2 - s3
            dst[o + d2_] = s1 + s2 - s0
            dst[o + d3_] = s3


@njit(cache=True, inline="always")
def _input_plane(x, p, ph, pw, th, tw, m, v):
    """V[:, c, q] = B^T d B for every tile of plane p = c*N + n of x."""
    N, C, H, W = x.shape
    a = m + 2
    c, n = p // N, p % N
    hp, wp = th * m + 2, tw * m + 2
    pad = np.zeros((hp, wp), dtype=v.dtype)               # the plane with its zero padding
    for h in range(max(0, -ph), min(H, hp - ph)):
        for w in range(max(0, -pw), min(W, wp - pw)):
            pad[h + ph, w + pw] = x[n, c, h, w]
    rows = np.empty((a, hp, tw), dtype=v.dtype)           # rows[j, r, tx]: B^T along w of row r of tile tx
    pf, rf, vf = pad.reshape(-1), rows.reshape(-1), v.reshape(-1)
    T = v.shape[2]
    for r in range(hp):
        _vec(0, m, pf, r * wp, 1, m, rf, r * tw, hp * tw, 1, tw)
    for ty in range(th):
        q = n * th * tw + ty * tw
        for j in range(a):   # then B^T along h: V[i*a + j] for i < a
            _vec(0, m, rf, (j * hp + ty * m) * tw, tw, 1, vf, (j * C + c) * T + q, a * C * T, 1, tw)


@njit(cache=True, inline="always")
def _output_plane(mm, b, p, th, tw, m, y):
    """y[n, k] = A^T M A per tile, cropped, plus b[k], for plane p = k*N + n."""
    N, K, oh, ow = y.shape
    a = m + 2
    k, n = p // N, p % N
    T = mm.shape[2]
    rows = np.empty((a, m, tw), dtype=mm.dtype)    # rows[i, x, tx]: A^T along w of tile row i
    out = np.empty((th * m, m, tw), dtype=mm.dtype)  # out[ty*m + y, x, tx]
    mf, rf, of = mm.reshape(-1), rows.reshape(-1), out.reshape(-1)
    bias = b[k] if b.shape[0] > 0 else y.dtype.type(0)  # an int 0 would make the sum float64
    for ty in range(th):
        q = n * th * tw + ty * tw
        for i in range(a):
            _vec(1, m, mf, (i * a * K + k) * T + q, K * T, 1, rf, i * m * tw, tw, 1, tw)
        for xx in range(m):
            _vec(1, m, rf, xx * tw, m * tw, 1, of, (ty * m * m + xx) * tw, m * tw, 1, tw)
    for yy in range(oh):
        for tx in range(tw):
            for xx in range(min(m, ow - tx * m)):
                y[n, k, yy, tx * m + xx] = out[yy, xx, tx] + bias


@njit(cache=True, inline="always")
def _grad_output_plane(gy, p, th, tw, m, qq):
    """Q[:, k, q] = A gy A^T per tile (gy zero past the output edge), for plane p = k*N + n."""
    N, K, oh, ow = gy.shape
    a = m + 2
    k, n = p // N, p % N
    T = qq.shape[2]
    hp, wp = th * m, tw * m
    pad = np.zeros((hp, wp), dtype=qq.dtype)
    for yy in range(oh):
        for xx in range(ow):
            pad[yy, xx] = gy[n, k, yy, xx]
    rows = np.empty((a, hp, tw), dtype=qq.dtype)   # rows[j, r, tx]: A along w
    pf, rf, qf = pad.reshape(-1), rows.reshape(-1), qq.reshape(-1)
    for r in range(hp):
        _vec(2, m, pf, r * wp, 1, m, rf, r * tw, hp * tw, 1, tw)
    for ty in range(th):
        q = n * th * tw + ty * tw
        for j in range(a):
            _vec(2, m, rf, (j * hp + ty * m) * tw, tw, 1, qf, (j * K + k) * T + q, a * K * T, 1, tw)


@njit(cache=True, inline="always")
def _grad_input_plane(z, p, ph, pw, th, tw, m, gx):
    """gx[n, c] = sum over tiles of B Z B^T at the tile's place (padding dropped), plane p = c*N + n."""
    N, C, H, W = gx.shape
    a = m + 2
    c, n = p // N, p % N
    T = z.shape[2]
    hp, wp = th * m + 2, tw * m + 2
    pad = np.zeros((hp, wp), dtype=z.dtype)        # gx with its padding, tiles summed in
    rows = np.empty((a, a, tw), dtype=z.dtype)     # rows[i, r, tx]: B along w of tile row i
    out = np.empty((a, a, tw), dtype=z.dtype)      # out[p, r, tx]: the tile
    zf, rf, of = z.reshape(-1), rows.reshape(-1), out.reshape(-1)
    for ty in range(th):
        q = n * th * tw + ty * tw
        for i in range(a):
            _vec(3, m, zf, (i * a * C + c) * T + q, C * T, 1, rf, i * a * tw, tw, 1, tw)
        for r in range(a):
            _vec(3, m, rf, r * tw, a * tw, 1, of, r * tw, a * tw, 1, tw)
        for pp in range(a):
            prow = pad[ty * m + pp]
            for r in range(a):
                for tx in range(tw):
                    prow[tx * m + r] += out[pp, r, tx]
    for h in range(H):
        for w in range(W):
            hh, ww = h + ph, w + pw
            gx[n, c, h, w] = pad[hh, ww] if hh < hp and ww < wp else gx.dtype.type(0)


# One plane per thread (numba.prange): planes never share outputs, so no atomics. Planes go channel
# by channel (p = c*N + n): the planes of one channel fill adjacent runs of each row of V (or read
# them, for M and Z), so a thread's writes stream through memory instead of hopping between 36
# rows per plane; 1.3-2x faster than image by image on 32x32 and 13x13 planes (one thread). Small calls run
# serially: waking the thread pool costs more than they do (as in cpu.py).
@njit(cache=True, parallel=True)
def _input_par(x, ph, pw, th, tw, m, v):
    for p in prange(x.shape[0] * x.shape[1]):
        _input_plane(x, p, ph, pw, th, tw, m, v)


@njit(cache=True)
def _input_ser(x, ph, pw, th, tw, m, v):
    for p in range(x.shape[0] * x.shape[1]):
        _input_plane(x, p, ph, pw, th, tw, m, v)


@njit(cache=True, parallel=True)
def _output_par(mm, b, th, tw, m, y):
    for p in prange(y.shape[0] * y.shape[1]):
        _output_plane(mm, b, p, th, tw, m, y)


@njit(cache=True)
def _output_ser(mm, b, th, tw, m, y):
    for p in range(y.shape[0] * y.shape[1]):
        _output_plane(mm, b, p, th, tw, m, y)


@njit(cache=True, parallel=True)
def _grad_output_par(gy, th, tw, m, qq):
    for p in prange(gy.shape[0] * gy.shape[1]):
        _grad_output_plane(gy, p, th, tw, m, qq)


@njit(cache=True)
def _grad_output_ser(gy, th, tw, m, qq):
    for p in range(gy.shape[0] * gy.shape[1]):
        _grad_output_plane(gy, p, th, tw, m, qq)


@njit(cache=True, parallel=True)
def _grad_input_par(z, ph, pw, th, tw, m, gx):
    for p in prange(gx.shape[0] * gx.shape[1]):
        _grad_input_plane(z, p, ph, pw, th, tw, m, gx)


@njit(cache=True)
def _grad_input_ser(z, ph, pw, th, tw, m, gx):
    for p in range(gx.shape[0] * gx.shape[1]):
        _grad_input_plane(z, p, ph, pw, th, tw, m, gx)


PARALLEL_MIN_SIZE = 1 << 16


class _CpuTransforms:
    """The four tile transforms on NumPy arrays (Numba); outputs are written into the given arrays."""

    xp = np

    @staticmethod
    def input(x, ph, pw, th, tw, m, v):
        (_input_par if v.size >= PARALLEL_MIN_SIZE else _input_ser)(x, ph, pw, th, tw, m, v)

    @staticmethod
    def output(mm, b, th, tw, m, y):
        b = np.empty(0, dtype=y.dtype) if b is None else np.ascontiguousarray(b)
        (_output_par if mm.size >= PARALLEL_MIN_SIZE else _output_ser)(mm, b, th, tw, m, y)

    @staticmethod
    def grad_output(gy, th, tw, m, qq):
        (_grad_output_par if qq.size >= PARALLEL_MIN_SIZE else _grad_output_ser)(gy, th, tw, m, qq)

    @staticmethod
    def grad_input(z, ph, pw, th, tw, m, gx):
        (_grad_input_par if z.size >= PARALLEL_MIN_SIZE else _grad_input_ser)(z, ph, pw, th, tw, m, gx)


# ==== CuPy launcher: the same four transforms as CUDA kernels (cuda/winograd.cu) =====================
CUDA_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda", "winograd.cu")
CUDA_KERNELS = ("wg_input_kernel", "wg_output_kernel", "wg_grad_output_kernel", "wg_grad_input_kernel")
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_THREADS = 256
_MAX_BLOCKS = 1 << 20  # grid-stride loops cover the rest


class _GpuTransforms:
    """The four transforms on CuPy arrays: one thread per (plane, tile), grid-stride loops."""

    def __init__(self, cp):
        self.xp = cp
        self._module = None
        self._kernels = {}

    def _kernel(self, name, m, dtype):
        key = (name, m, np.dtype(dtype))
        if key not in self._kernels:
            if self._module is None:
                with open(CUDA_SOURCE) as f:
                    source = f.read()
                names = [f"{k}<{t}, {mm}>" for k in CUDA_KERNELS for t in _CTYPES.values() for mm in TILES]
                self._module = self.xp.RawModule(code=source, options=("--std=c++14",), name_expressions=names)
            self._kernels[key] = self._module.get_function(f"{name}<{_CTYPES[np.dtype(dtype)]}, {m}>")
        return self._kernels[key]

    def _launch(self, name, m, dtype, total, args):
        if total > 0:
            blocks = int(min((total + _THREADS - 1) // _THREADS, _MAX_BLOCKS))
            self._kernel(name, m, dtype)((blocks, 1, 1), (_THREADS, 1, 1), args)

    def input(self, x, ph, pw, th, tw, m, v):
        N, C, H, W = x.shape
        total = N * C * th * tw
        self._launch("wg_input_kernel", m, x.dtype, total,
                     (x, v, np.int64(total)) + tuple(np.int32(a) for a in (C, H, W, ph, pw, th, tw)))

    def output(self, mm, b, th, tw, m, y):
        N, K, oh, ow = y.shape
        total = N * K * th * tw
        bias = self.xp.zeros(1, dtype=y.dtype) if b is None else self.xp.ascontiguousarray(b)
        self._launch("wg_output_kernel", m, y.dtype, total,
                     (mm, bias, y, np.int64(total), np.int32(b is not None))
                     + tuple(np.int32(a) for a in (K, oh, ow, th, tw)))

    def grad_output(self, gy, th, tw, m, qq):
        N, K, oh, ow = gy.shape
        total = N * K * th * tw
        self._launch("wg_grad_output_kernel", m, gy.dtype, total,
                     (gy, qq, np.int64(total)) + tuple(np.int32(a) for a in (K, oh, ow, th, tw)))

    def grad_input(self, z, ph, pw, th, tw, m, gx):
        # a gather: one thread per (plane, m x m block of gx) sums the up to four tiles covering it
        N, C, H, W = gx.shape
        bh, bw = -(-(H + ph) // m), -(-(W + pw) // m)
        total = N * C * bh * bw
        self._launch("wg_grad_input_kernel", m, gx.dtype, total,
                     (z, gx, np.int64(total)) + tuple(np.int32(a) for a in (C, H, W, ph, pw, th, tw, bh, bw)))


@functools.lru_cache(maxsize=None)
def _gpu_transforms(cp):
    return _GpuTransforms(cp)


