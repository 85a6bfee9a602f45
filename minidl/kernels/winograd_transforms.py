"""The four tile transforms of Winograd convolution (minidl/kernels/winograd.py), on both devices.

Numba kernels over NumPy arrays and CuPy launchers of the CUDA source (cuda/winograd.cu), side by
side; winograd.py holds the matrices, the NumPy reference and the driver that calls these.
"""
import functools
import os

import numpy as np

from minidl.kernels import _numba
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
#   input k of vector t at src[sb + so[k] + t*st], output j at dst[db + do[j] + t*dt]
# (so, do: 6 offsets each, of which the transform reads its first alpha or m; ``_even`` and
# ``_split`` build them).

@njit(cache=True, inline="always")
def _even(s):
    """Offsets 0, s, ..., 5s: an axis with stride s."""
    return (0, s, 2 * s, 3 * s, 4 * s, 5 * s)


@njit(cache=True, inline="always")
def _split(m, inner, outer):
    """Offsets of k = 0..5 along a phase-split axis: element k at (k % m) * outer + (k // m) * inner."""
    return (0, (1 % m) * outer + (1 // m) * inner, (2 % m) * outer + (2 // m) * inner,
            (3 % m) * outer + (3 // m) * inner, (4 % m) * outer + (4 // m) * inner,
            (5 % m) * outer + (5 // m) * inner)


@njit(cache=True, inline="always")
def _vec(kind, m, src, sb, so, st, dst, db, do, dt, n):
    # unsigned indices (all >= 0): Numba then drops its negative-index test, which otherwise keeps
    # LLVM from vectorising (a plain store loop ran 10x slower with signed indices)
    sb, st, db, dt = u64(sb + so[0]), u64(st), u64(db + do[0]), u64(dt)
    s1_, s2_, s3_, s4_, s5_ = u64(so[1] - so[0]), u64(so[2] - so[0]), u64(so[3] - so[0]), u64(so[4] - so[0]), u64(so[5] - so[0])
    d1_, d2_, d3_, d4_, d5_ = u64(do[1] - do[0]), u64(do[2] - do[0]), u64(do[3] - do[0]), u64(do[4] - do[0]), u64(do[5] - do[0])
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


# Scratch: each worker thread allocates its padded plane and pass buffers once and reuses them for
# all its planes (the zero padding of the input planes is written once: later planes overwrite the
# same interior). Planes go channel by channel (p = c*N + n): the planes of one channel fill
# adjacent runs of each row of V (or read them, for M and Z), so a worker's writes stream through
# memory instead of hopping between 36 rows per plane; 1.3-2x faster than image by image.
# Every loop indexes flat arrays with unsigned integers (see _vec).

@njit(cache=True, inline="always")
def _input_plane(x, p, ph, pw, th, tw, m, v, pad, rows):
    """V[:, c, q] = B^T d B for every tile of plane p = c*N + n of x.

    pad (hp, m, tw + 1): the padded plane with its columns split by phase, pad[r, f, j] = column
    j*m + f, so that tile tx's input k, column tx*m + k, sits at (k % m, tx + k // m): pass 1 then
    reads unit-stride runs (a stride-m read, one column per tile, vectorised poorly).
    rows (alpha, hp, tw): pass 1's output.
    """
    N, C, H, W = x.shape
    a = m + 2
    c, n = p // N, p % N
    hp, L = th * m + 2, tw + 1
    T = v.shape[2]
    xf, pf, rf, vf = x.reshape(-1), pad.reshape(-1), rows.reshape(-1), v.reshape(-1)
    um = u64(m)
    for h in range(max(0, -ph), min(H, hp - ph)):
        xb = u64(((n * C + c) * H + h) * W)
        for f in range(m):
            j0, j1 = max(0, -((f - pw) // m)), min(L, (W + pw - f + m - 1) // m)
            pb, xo = u64(((h + ph) * m + f) * L + j0), xb + u64(j0 * m + f - pw)
            for j in range(u64(max(0, j1 - j0))):
                pf[pb + j] = xf[xo + j * um]
    for r in range(hp):   # B^T along w: rows[j, r, tx]
        _vec(0, m, pf, r * m * L, _split(m, 1, L), 1, rf, r * tw, _even(hp * tw), 1, tw)
    for ty in range(th):  # then B^T along h: V[i*a + j]
        q = n * th * tw + ty * tw
        for j in range(a):
            _vec(0, m, rf, (j * hp + ty * m) * tw, _even(tw), 1, vf, (j * C + c) * T + q, _even(a * C * T), 1, tw)


@njit(cache=True, inline="always")
def _output_plane(mm, b, p, th, tw, m, y, rows, out):
    """y[n, k] = A^T M A per tile, cropped, plus b[k], for plane p = k*N + n.

    rows (alpha, m, tw): A^T along w of one tile row; out (th*m, m, tw): out[ty*m + y, x, tx].
    """
    N, K, oh, ow = y.shape
    a = m + 2
    k, n = p // N, p % N
    T = mm.shape[2]
    mf, rf, of, yf = mm.reshape(-1), rows.reshape(-1), out.reshape(-1), y.reshape(-1)
    bias = b[k] if b.shape[0] > 0 else y.dtype.type(0)  # an int 0 would make the sum float64
    for ty in range(th):
        q = n * th * tw + ty * tw
        for i in range(a):
            _vec(1, m, mf, (i * a * K + k) * T + q, _even(K * T), 1, rf, i * m * tw, _even(tw), 1, tw)
        for xx in range(m):
            _vec(1, m, rf, xx * tw, _even(m * tw), 1, of, (ty * m * m + xx) * tw, _even(m * tw), 1, tw)
    um, utw = u64(m), u64(tw)
    for yy in range(oh):
        yb, ob = u64(((n * K + k) * oh + yy) * ow), u64(yy * m * tw)
        full = u64(ow // m)
        for tx in range(full):
            for xx in range(um):
                yf[yb + tx * um + xx] = of[ob + xx * utw + tx] + bias
        for xx in range(u64(ow % m)):
            yf[yb + full * um + xx] = of[ob + xx * utw + full] + bias


@njit(cache=True, inline="always")
def _grad_output_plane(gy, p, th, tw, m, qq, pad, rows):
    """Q[:, k, q] = A gy A^T per tile (gy zero past the output edge), for plane p = k*N + n.

    pad (th*m, tw*m): gy, zero past its edge (its tiles do not overlap: the strided reads of pass 1
    cost less here than splitting the columns by phase); rows (alpha, th*m, tw): pass 1's output.
    """
    N, K, oh, ow = gy.shape
    a = m + 2
    k, n = p // N, p % N
    T = qq.shape[2]
    hp = th * m
    gf, pf, rf, qf = gy.reshape(-1), pad.reshape(-1), rows.reshape(-1), qq.reshape(-1)
    uow, uwp = u64(ow), u64(tw * m)
    for r in range(oh):
        gb, pb = u64(((n * K + k) * oh + r) * ow), u64(r) * uwp
        for xx in range(uow):
            pf[pb + xx] = gf[gb + xx]
    for r in range(hp):
        _vec(2, m, pf, r * tw * m, _even(1), m, rf, r * tw, _even(hp * tw), 1, tw)
    for ty in range(th):
        q = n * th * tw + ty * tw
        for j in range(a):
            _vec(2, m, rf, (j * hp + ty * m) * tw, _even(tw), 1, qf, (j * K + k) * T + q, _even(a * K * T), 1, tw)


@njit(cache=True, inline="always")
def _grad_input_plane(z, p, ph, pw, th, tw, m, gx, pad, rows, out):
    """gx[n, c] = sum over tiles of B Z B^T at the tile's place (padding dropped), plane p = c*N + n.

    pad (th*m + 2, tw*m + 2): gx with its padding, tiles summed in; rows, out (alpha, alpha, tw):
    B along w of one tile row, then the tiles, out[p, r, tx].
    """
    N, C, H, W = gx.shape
    a = m + 2
    c, n = p // N, p % N
    T = z.shape[2]
    hp, wp = th * m + 2, tw * m + 2
    zf, pf, rf, of, gf = z.reshape(-1), pad.reshape(-1), rows.reshape(-1), out.reshape(-1), gx.reshape(-1)
    pad[:] = 0
    um, utw = u64(m), u64(tw)
    for ty in range(th):
        q = n * th * tw + ty * tw
        for i in range(a):
            _vec(3, m, zf, (i * a * C + c) * T + q, _even(C * T), 1, rf, i * a * tw, _even(tw), 1, tw)
        for r in range(a):
            _vec(3, m, rf, r * tw, _even(a * tw), 1, of, r * tw, _even(a * tw), 1, tw)
        for pp in range(a):
            pb = u64((ty * m + pp) * wp)
            for r in range(a):
                ob = u64((pp * a + r) * tw)
                for tx in range(utw):
                    pf[pb + tx * um + u64(r)] += of[ob + tx]
    zero = gx.dtype.type(0)
    for h in range(H):
        gb = u64(((n * C + c) * H + h) * W)
        hh = h + ph
        if hh >= hp:
            for w in range(u64(W)):
                gf[gb + w] = zero
            continue
        pb = u64(hh * wp + pw)
        w1 = u64(min(W, wp - pw))
        for w in range(w1):
            gf[gb + w] = pf[pb + w]
        for w in range(w1, u64(W)):
            gf[gb + w] = zero


# One worker per thread: numba.prange over ``workers`` contiguous ranges of planes. Planes never
# share outputs, so no atomics. Small calls run serially (the _ser kernels): waking the thread pool
# costs more than they do (as in cpu.py).
@njit(cache=True, inline="always")
def _input_range(x, ph, pw, th, tw, m, v, p0, p1):
    pad = np.zeros((th * m + 2, m, tw + 1), dtype=v.dtype)
    rows = np.empty((m + 2, th * m + 2, tw), dtype=v.dtype)
    for p in range(p0, p1):
        _input_plane(x, p, ph, pw, th, tw, m, v, pad, rows)


@njit(cache=True, inline="always")
def _output_range(mm, b, th, tw, m, y, p0, p1):
    rows = np.empty((m + 2, m, tw), dtype=mm.dtype)
    out = np.empty((th * m, m, tw), dtype=mm.dtype)
    for p in range(p0, p1):
        _output_plane(mm, b, p, th, tw, m, y, rows, out)


@njit(cache=True, inline="always")
def _grad_output_range(gy, th, tw, m, qq, p0, p1):
    pad = np.zeros((th * m, tw * m), dtype=qq.dtype)
    rows = np.empty((m + 2, th * m, tw), dtype=qq.dtype)
    for p in range(p0, p1):
        _grad_output_plane(gy, p, th, tw, m, qq, pad, rows)


@njit(cache=True, inline="always")
def _grad_input_range(z, ph, pw, th, tw, m, gx, p0, p1):
    pad = np.empty((th * m + 2, tw * m + 2), dtype=z.dtype)
    rows = np.empty((m + 2, m + 2, tw), dtype=z.dtype)
    out = np.empty((m + 2, m + 2, tw), dtype=z.dtype)
    for p in range(p0, p1):
        _grad_input_plane(z, p, ph, pw, th, tw, m, gx, pad, rows, out)


@njit(cache=True, parallel=True)
def _input_par(x, ph, pw, th, tw, m, v, workers):
    P = x.shape[0] * x.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _input_range(x, ph, pw, th, tw, m, v, wk * per, min(P, (wk + 1) * per))


@njit(cache=True)
def _input_ser(x, ph, pw, th, tw, m, v):
    _input_range(x, ph, pw, th, tw, m, v, 0, x.shape[0] * x.shape[1])


@njit(cache=True, parallel=True)
def _output_par(mm, b, th, tw, m, y, workers):
    P = y.shape[0] * y.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _output_range(mm, b, th, tw, m, y, wk * per, min(P, (wk + 1) * per))


@njit(cache=True)
def _output_ser(mm, b, th, tw, m, y):
    _output_range(mm, b, th, tw, m, y, 0, y.shape[0] * y.shape[1])


@njit(cache=True, parallel=True)
def _grad_output_par(gy, th, tw, m, qq, workers):
    P = gy.shape[0] * gy.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _grad_output_range(gy, th, tw, m, qq, wk * per, min(P, (wk + 1) * per))


@njit(cache=True)
def _grad_output_ser(gy, th, tw, m, qq):
    _grad_output_range(gy, th, tw, m, qq, 0, gy.shape[0] * gy.shape[1])


@njit(cache=True, parallel=True)
def _grad_input_par(z, ph, pw, th, tw, m, gx, workers):
    P = gx.shape[0] * gx.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _grad_input_range(z, ph, pw, th, tw, m, gx, wk * per, min(P, (wk + 1) * per))


@njit(cache=True)
def _grad_input_ser(z, ph, pw, th, tw, m, gx):
    _grad_input_range(z, ph, pw, th, tw, m, gx, 0, gx.shape[0] * gx.shape[1])


PARALLEL_MIN_SIZE = 1 << 16


def _threads():
    return _numba.numba.get_num_threads() if _numba.numba is not None else 1


class _CpuTransforms:
    """The four tile transforms on NumPy arrays (Numba); outputs are written into the given arrays."""

    xp = np

    @staticmethod
    def input(x, ph, pw, th, tw, m, v):
        if v.size >= PARALLEL_MIN_SIZE:
            _input_par(x, ph, pw, th, tw, m, v, _threads())
        else:
            _input_ser(x, ph, pw, th, tw, m, v)

    @staticmethod
    def output(mm, b, th, tw, m, y):
        b = np.empty(0, dtype=y.dtype) if b is None else np.ascontiguousarray(b)
        if mm.size >= PARALLEL_MIN_SIZE:
            _output_par(mm, b, th, tw, m, y, _threads())
        else:
            _output_ser(mm, b, th, tw, m, y)

    @staticmethod
    def grad_output(gy, th, tw, m, qq):
        if qq.size >= PARALLEL_MIN_SIZE:
            _grad_output_par(gy, th, tw, m, qq, _threads())
        else:
            _grad_output_ser(gy, th, tw, m, qq)

    @staticmethod
    def grad_input(z, ph, pw, th, tw, m, gx):
        if z.size >= PARALLEL_MIN_SIZE:
            _grad_input_par(z, ph, pw, th, tw, m, gx, _threads())
        else:
            _grad_input_ser(z, ph, pw, th, tw, m, gx)


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


