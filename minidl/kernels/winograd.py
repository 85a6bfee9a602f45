"""Winograd convolution F(m x m, 3 x 3) for 3x3, stride-1 layers: forward and both gradients.

Side by side: the matrices (derived, not copied), the slow obvious NumPy version (``reference_*``),
the Numba transforms, the CuPy launcher (CUDA source in ``cuda/winograd.cu``) and the driver that
both devices share. ``minidl.functional.conv`` calls ``forward`` / ``backward`` when
``conv2d(..., algorithm="winograd")`` (or "auto") picks this algorithm.

The idea (Winograd 1980; Lavin & Gray 2016). In 1-D, m outputs of a 3-tap correlation,
y_i = sum_u g_u d_(i+u), need 3m multiplies directly, but only alpha = m + 2 as

    y = A^T [ (G g) * (B^T d) ]          (* elementwise; A^T m x alpha, G alpha x 3, B^T alpha x alpha)

In 2-D, nested: each alpha x alpha input tile d (tiles step by m, overlapping by 2) gives an m x m
output tile Y = A^T [ (G g G^T) * (B^T d B) ] A. Summed over input channels, the elementwise
product becomes, for each of the alpha^2 transform points t, one matrix product:

    forward     U[t] = (G w G^T)[t]     (K, C)   filter transform
                V[t] = (B^T d B)[t]     (C, T)   input transform, T = tiles of the batch
                M[t] = U[t] @ V[t]      (K, T)   alpha^2 GEMMs (BLAS / cuBLAS, batched)
                y    = A^T M A          per tile, cropped to (oh, ow), plus the bias

The gradients come from the same identity read the other way (its bilinear form
<gy, y> = sum_t (A gy A^T)[t] * U[t] * V[t] is linear in each of gy, w and d):

    backward    Q[t]  = (A gy A^T)[t]   (K, T)   gy transform (gy tile zero past the output edge)
                gx    = B (U[t]^T @ Q[t]) B^T    per tile, overlapping tiles summed, padding dropped
                gw    = G^T (sum over tiles Q[t] @ V[t]^T) G

So backward needs no new matrices and no flipped weights: the input gradient is the adjoint of
the forward tile map (the equivalent "3x3 conv of gy padded by 2-p with the flipped, transposed
weights" is what the tests compare it against, through im2col), and the weight gradient is a
correlation of d with gy tiles, F(3x3, m x m) in Toom-Cook terms, computed with forward's B^T.

Multiplies per output in the GEMMs: 9 directly, alpha^2/m^2 = 4 for F(2,3), 2.25 for F(4,3).
Accuracy (float32, relative to the largest output): about 3e-7 for F(2,3), as im2col, and
about 7e-6 for F(4,3): its points +-2 make A^T's entries up to 8 and G's down to 1/24. Both stay
within the 1e-4 that ``auto`` promises; the tests and lesson 03 measure it.

Layouts: V (alpha^2, C, T), M and Q (alpha^2, K, T), U (alpha^2, K, C/groups); tile index
q = (n*th + ty)*tw + tx with th = ceil(oh/m), tw = ceil(ow/m). With groups, the channel axes
split into (groups, per-group) and the GEMMs batch over (t, group).
"""
import functools
import math
import os
import threading
from fractions import Fraction

import numpy as np

from minidl.kernels import _numba
from minidl.kernels._numba import njit, prange, u64

# ==== the matrices, derived by Toom-Cook from interpolation points ====================================
# Points 0, +-1 (F(2,3)) and 0, +-1, +-2 (F(4,3)), plus the point at infinity: integers keep the
# transforms exact in binary for the small values, and these are Lavin & Gray's choice. (0, +-1,
# 1/2, -2 measured about 3x smaller errors for F(4,3) but needs B^T entries up to 32.)
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}
TILES = tuple(POINTS)  # the m this module implements


def _evaluation(points, n):
    """(len(points)+1, n): row j evaluates a degree n-1 polynomial at points[j]; the last row takes its leading coefficient."""
    return [[Fraction(p) ** k for k in range(n)] for p in points] + [[Fraction(int(k == n - 1)) for k in range(n)]]


def _inverse(a):
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(a)
    rows = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(a)]
    for c in range(n):
        p = next(i for i in range(c, n) if rows[i][c] != 0)
        rows[c], rows[p] = rows[p], rows[c]
        rows[c] = [v / rows[c][c] for v in rows[c]]
        for i in range(n):
            if i != c and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [vi - f * vc for vi, vc in zip(rows[i], rows[c])]
    return [r[n:] for r in rows]


@functools.lru_cache(maxsize=None)
def matrices(m, r=3, points=None):
    """Exact (A^T, G, B^T) of F(m, r) as lists of Fractions: y = A^T [(G g) * (B^T d)].

    Linear convolution s = g * h is s = V^-1 [(V_r g) * (V_m h)] (evaluate both polynomials at
    the points, multiply, interpolate back). Correlation is its transpose: y = V_m^T [(V_r g) *
    (V^-T d)], so A^T = V_m^T, G = V_r, B^T = V^-T. Row j of B^T is then scaled to integers and row
    j of G divided by the same factor (their product is unchanged).
    """
    points = POINTS[m] if points is None else points
    alpha = m + r - 1
    if len(points) != alpha - 1:
        raise ValueError(f"winograd.matrices: F({m}, {r}) needs {alpha - 1} finite points, got {len(points)}")
    vm, vr, va = _evaluation(points, m), _evaluation(points, r), _evaluation(points, alpha)
    inv = _inverse(va)
    bt = [[inv[j][i] for j in range(alpha)] for i in range(alpha)]
    at = [[vm[j][i] for j in range(alpha)] for i in range(m)]
    g = [list(row) for row in vr]
    for j in range(alpha):
        scale = math.lcm(*[v.denominator for v in bt[j]])
        bt[j] = [v * scale for v in bt[j]]
        g[j] = [v / scale for v in g[j]]
    return at, g, bt


def float_matrices(m, dtype=np.float64):
    """(A^T, G, B^T) of F(m, 3) as arrays of ``dtype``."""
    return tuple(np.array([[float(v) for v in row] for row in a], dtype=dtype) for a in matrices(m))


# ==== geometry and the choice of algorithm ==========================================================
def tiles(oh, ow, m):
    """(th, tw): m x m output tiles covering an oh x ow output."""
    return -(-oh // m), -(-ow // m)


def unsupported(x_shape, w_shape, stride, dtype=None):
    """Why Winograd cannot run this convolution (a sentence), or None when it can."""
    if tuple(w_shape[2:]) != (3, 3):
        return f"kernel {w_shape[2]}x{w_shape[3]} (Winograd here is F(m x m, 3 x 3): 3x3 kernels only)"
    if tuple(stride) != (1, 1):
        return f"stride {tuple(stride)} (Winograd tiles need stride 1)"
    if dtype is not None and np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return f"dtype {np.dtype(dtype)} (float32 or float64 only)"
    return None


def best_tile(oh, ow):
    """The m (2 or 4) with the fewest GEMM multiplies, alpha^2 * tiles, for an oh x ow output.

    F(4,3) wins except where its partly empty tiles cost more (2x2, 6x6...); ties go to F(2,3),
    the more accurate.
    """
    return min(TILES, key=lambda m: ((m + 2) ** 2 * math.prod(tiles(oh, ow, m)), m))


# The ``auto`` rule, from benchmarks/cpu.py --rows winograd (RESULTS.md, CPU section; a loaded
# 2-core machine, so noisy). With 2 threads (load ~3) Winograd F(4,3) took 0.79x of im2col's time
# at 64 -> 128 channels on 32x32, tied at 64 -> 64 (0.98x), and made the VGG-style step 0.69x of
# im2col's (0.85x PyTorch's); it lost at 256 -> 384 channels on 13x13 (2.1x: its 4x4 tiles cover
# 16x16) and single-threaded at heavy load lost or tied everywhere but 128 channels on 56x56.
# Below that the transforms cost more than the multiplies they save. So: both channel counts
# >= 64 and >= 16x16 output pixels, and >= 1024 tiles in the batch (every row that won had >= 1568;
# lesson 03's batch of 2, 32 tiles, measured 3.8x slower: per-call overheads). Re-derive on another
# machine with --rows sweep / --rows winograd. float64 keeps im2col: auto promises float64
# results unchanged.
AUTO_MIN_CHANNELS = 64
AUTO_MIN_PIXELS = 256
AUTO_MIN_TILES = 1024
# On the GPU "auto" keeps im2col until a lent GPU has measured the CUDA transforms (benchmarks/gpu.py
# compares algorithm="winograd" with "im2col" on VGG16); none was lent when they were written.
AUTO_ON_GPU = False


def auto_choice(x_shape, w_shape, stride, padding, groups, dtype):
    """The m (2 or 4) that ``algorithm="auto"`` runs with Winograd, or None for im2col."""
    if np.dtype(dtype) != np.float32 or unsupported(x_shape, w_shape, stride, dtype):
        return None
    (ph, pw), (H, W) = padding, x_shape[2:]
    oh, ow = H + 2 * ph - 2, W + 2 * pw - 2
    if min(x_shape[1] // groups, w_shape[0] // groups) < AUTO_MIN_CHANNELS or oh * ow < AUTO_MIN_PIXELS:
        return None
    m = best_tile(oh, ow)
    return m if x_shape[0] * math.prod(tiles(oh, ow, m)) >= AUTO_MIN_TILES else None


# ==== reference: the obvious NumPy version, one tile position at a time ==============================
def _ref_tiles(x, ph, pw, th, tw, m):
    """(N, C, th, tw, alpha, alpha): every input tile, zeros outside x."""
    N, C, H, W = x.shape
    a = m + 2
    padded = np.zeros((N, C, th * m + 2, tw * m + 2), dtype=x.dtype)
    h1, w1 = min(H, th * m + 2 - ph), min(W, tw * m + 2 - pw)  # padding past the last tile is never read
    padded[:, :, ph:ph + h1, pw:pw + w1] = x[:, :, :h1, :w1]
    d = np.empty((N, C, th, tw, a, a), dtype=x.dtype)
    for ty in range(th):
        for tx in range(tw):
            d[:, :, ty, tx] = padded[:, :, ty * m:ty * m + a, tx * m:tx * m + a]
    return d


def reference_forward(x, w, b, ph, pw, m, groups=1):
    """x (N, C, H, W) * w (K, C/groups, 3, 3) + b (K,) or None -> (N, K, oh, ow), stride 1."""
    at, g, bt = float_matrices(m, x.dtype)
    N, C, H, W = x.shape
    K, G = w.shape[0], groups
    oh, ow = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = tiles(oh, ow, m)
    d = _ref_tiles(x, ph, pw, th, tw, m)
    v = bt @ d @ bt.T                                    # (N, C, th, tw, a, a)
    u = g @ w @ g.T                                      # (K, C/G, a, a)
    y = np.empty((N, K, th * m, tw * m), dtype=x.dtype)
    for ty in range(th):
        for tx in range(tw):
            for gi in range(G):
                ks, cs = slice(gi * K // G, (gi + 1) * K // G), slice(gi * C // G, (gi + 1) * C // G)
                mm = np.einsum("kcab,ncab->nkab", u[ks], v[:, cs, ty, tx])   # summed over channels
                y[:, ks, ty * m:(ty + 1) * m, tx * m:(tx + 1) * m] = at @ mm @ at.T
    y = y[:, :, :oh, :ow]
    return y + b.reshape(1, K, 1, 1) if b is not None else np.ascontiguousarray(y)


def reference_backward(x, w, gy, ph, pw, m, groups=1):
    """(gx, gw, gb) of reference_forward for the output gradient gy (N, K, oh, ow)."""
    at, g, bt = float_matrices(m, x.dtype)
    N, C, H, W = x.shape
    K, G, a = w.shape[0], groups, m + 2
    oh, ow = gy.shape[2:]
    th, tw = tiles(oh, ow, m)
    v = bt @ _ref_tiles(x, ph, pw, th, tw, m) @ bt.T
    u = g @ w @ g.T
    gyp = np.zeros((N, K, th * m, tw * m), dtype=gy.dtype)
    gyp[:, :, :oh, :ow] = gy
    gxp = np.zeros((N, C, th * m + 2, tw * m + 2), dtype=x.dtype)   # x padded as _ref_tiles does
    mw = np.zeros((K, C // G, a, a), dtype=x.dtype)
    for ty in range(th):
        for tx in range(tw):
            q = at.T @ gyp[:, :, ty * m:(ty + 1) * m, tx * m:(tx + 1) * m] @ at   # A gy A^T, (N, K, a, a)
            for gi in range(G):
                ks, cs = slice(gi * K // G, (gi + 1) * K // G), slice(gi * C // G, (gi + 1) * C // G)
                z = np.einsum("kcab,nkab->ncab", u[ks], q[:, ks])
                gxp[:, cs, ty * m:ty * m + a, tx * m:tx * m + a] += bt.T @ z @ bt
                mw[ks] += np.einsum("nkab,ncab->kcab", q[:, ks], v[:, cs, ty, tx])
    h1, w1 = min(H, th * m + 2 - ph), min(W, tw * m + 2 - pw)
    gx = np.zeros(x.shape, dtype=x.dtype)
    gx[:, :, :h1, :w1] = gxp[:, :, ph:ph + h1, pw:pw + w1]
    return gx, g.T @ mw @ g, gy.sum(axis=(0, 2, 3))


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
    for t in range(u64(n)):
        i, o = sb + t * st, db + t * dt
        if kind == 0 and m == 4:      # B^T, 6 -> 6
            s0, s1, s2, s3, s4, s5 = src[i], src[i + s1_], src[i + s2_], src[i + s3_], src[i + s4_], src[i + s5_]
            dst[o] = 4 * s0 - 5 * s2 + s4
            dst[o + d1_] = 4 * (s1 + s2) - s3 - s4
            dst[o + d2_] = 4 * (s2 - s1) + s3 - s4
            dst[o + d3_] = 2 * (s3 - s1) + s4 - s2
            dst[o + d4_] = 2 * (s1 - s3) + s4 - s2
            dst[o + d5_] = 4 * s1 - 5 * s3 + s5
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
            dst[o + d1_] = m1 + 2 * m2
            dst[o + d2_] = p1 + 4 * p2
            dst[o + d3_] = m1 + 8 * m2 + s5
        elif kind == 1:               # A^T, 4 -> 2
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            dst[o] = s0 + s1 + s2
            dst[o + d1_] = s1 - s2 + s3
        elif kind == 2 and m == 4:    # A, 4 -> 6
            s0, s1, s2, s3 = src[i], src[i + s1_], src[i + s2_], src[i + s3_]
            e, od, e4, o2 = s0 + s2, s1 + s3, s0 + 4 * s2, 2 * s1 + 8 * s3
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
            dst[o] = 4 * s0
            dst[o + d1_] = 4 * (s1 - s2 + s5) + 2 * (s4 - s3)
            dst[o + d2_] = 4 * (s1 + s2) - 5 * s0 - s3 - s4
            dst[o + d3_] = s2 - s1 + 2 * (s3 - s4) - 5 * s5
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
    """V[:, c, q] = B^T d B for every tile of plane p = n*C + c of x."""
    N, C, H, W = x.shape
    a = m + 2
    n, c = p // C, p % C
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
    """y[n, k] = A^T M A per tile, cropped, plus b[k], for plane p = n*K + k."""
    N, K, oh, ow = y.shape
    a = m + 2
    n, k = p // K, p % K
    T = mm.shape[2]
    rows = np.empty((a, m, tw), dtype=mm.dtype)    # rows[i, x, tx]: A^T along w of tile row i
    out = np.empty((th * m, m, tw), dtype=mm.dtype)  # out[ty*m + y, x, tx]
    mf, rf, of = mm.reshape(-1), rows.reshape(-1), out.reshape(-1)
    bias = b[k] if b.shape[0] > 0 else 0
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
    """Q[:, k, q] = A gy A^T per tile (gy zero past the output edge), for plane p = n*K + k."""
    N, K, oh, ow = gy.shape
    a = m + 2
    n, k = p // K, p % K
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
    """gx[n, c] = sum over tiles of B Z B^T at the tile's place (padding dropped), plane p = n*C + c."""
    N, C, H, W = gx.shape
    a = m + 2
    n, c = p // C, p % C
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
            gx[n, c, h, w] = pad[hh, ww] if hh < hp and ww < wp else 0


# One plane per thread (numba.prange): planes never share outputs, so no atomics. Small calls run
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


def _transforms(x):
    from minidl import backend
    if backend._is_cupy_array(x):
        import cupy
        return _gpu_transforms(cupy)
    return _CpuTransforms


# ==== the driver, the same on both devices ============================================================
CHUNK_BYTES = 256 * 2 ** 20      # bound on the transform arrays of one chunk of the batch (CPU)
GPU_CHUNK_BYTES = 2 * 2 ** 30
_local = threading.local()


def _buffer(xp, name, shape, dtype):
    """An uninitialised array of ``shape``; on the CPU a view of a buffer kept per thread and name.

    Reusing them saves re-faulting 100 MB temporaries at every call (see conv.py's _scratch); the
    view is valid until the next call asking for the same name.
    """
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    bufs = _local.__dict__.setdefault("buffers", {})
    size, key = math.prod(shape), (name, np.dtype(dtype))
    if key not in bufs or bufs[key].size < size:
        bufs.pop(key, None)
        bufs[key] = np.empty(size, dtype=dtype)
    return bufs[key][:size].reshape(shape)


def release_buffers():
    """Free this thread's reused Winograd buffers."""
    _local.__dict__.pop("buffers", None)


def _chunks(n, bytes_per_sample, xp):
    limit = CHUNK_BYTES if xp is np else GPU_CHUNK_BYTES
    step = max(1, min(n, limit // max(1, bytes_per_sample)))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _filter_transform(xp, w, m):
    """U (alpha^2, K, C/groups) = G w G^T at each transform point."""
    _, g, _ = float_matrices(m, w.dtype)
    g = xp.asarray(g)
    K, Cg = w.shape[:2]
    u = xp.matmul(xp.matmul(g, w), g.T)                 # (K, Cg, a, a)
    return xp.ascontiguousarray(u.reshape(K, Cg, -1).transpose(2, 0, 1))


def forward(x, w, b, padding, groups=1, m=4):
    """x (N, C, H, W) * w (K, C/groups, 3, 3) + b (K,) or None -> y (N, K, oh, ow), stride 1.

    padding: (ph, pw); m: the output tile, 2 for F(2x2, 3x3) or 4 for F(4x4, 3x3).
    """
    tf = _transforms(x)
    xp = tf.xp
    ph, pw = padding
    N, C, H, W = x.shape
    K, G, a2 = w.shape[0], groups, (m + 2) ** 2
    oh, ow = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = tiles(oh, ow, m)
    x = xp.ascontiguousarray(x)
    u = _filter_transform(xp, w, m).reshape(a2, G, K // G, C // G)
    y = xp.empty((N, K, oh, ow), dtype=x.dtype)
    for n0, n1 in _chunks(N, a2 * (C + K) * th * tw * x.itemsize, xp):
        t = (n1 - n0) * th * tw
        v = _buffer(xp, "v", (a2, C, t), x.dtype)
        tf.input(x[n0:n1], ph, pw, th, tw, m, v)
        mm = _buffer(xp, "m", (a2, K, t), x.dtype)
        xp.matmul(u, v.reshape(a2, G, C // G, t), out=mm.reshape(a2, G, K // G, t))
        tf.output(mm, b, th, tw, m, y[n0:n1])
    return y


def backward(x, w, gy, padding, groups=1, m=4, need_gx=True, need_gw=True, need_gb=True):
    """(gx, gw, gb) of ``forward`` for gy (N, K, oh, ow); None for those not needed."""
    tf = _transforms(gy)
    xp = tf.xp
    ph, pw = padding
    N, C, H, W = x.shape
    K, G, a2 = w.shape[0], groups, (m + 2) ** 2
    Kg, Cg = K // G, C // G
    oh, ow = gy.shape[2:]
    th, tw = tiles(oh, ow, m)
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    u = _filter_transform(xp, w, m).reshape(a2, G, Kg, Cg) if need_gx else None
    gx = xp.empty(x.shape, dtype=x.dtype) if need_gx else None
    mw = xp.zeros((a2, G, Kg, Cg), dtype=x.dtype) if need_gw else None
    if need_gx or need_gw:
        for n0, n1 in _chunks(N, a2 * (2 * C + K) * th * tw * x.itemsize, xp):
            t = (n1 - n0) * th * tw
            qq = _buffer(xp, "m", (a2, K, t), x.dtype)
            tf.grad_output(gy[n0:n1], th, tw, m, qq)
            q4 = qq.reshape(a2, G, Kg, t)
            if need_gw:
                v = _buffer(xp, "v", (a2, C, t), x.dtype)   # recomputed: cheaper than keeping V alive
                tf.input(x[n0:n1], ph, pw, th, tw, m, v)
                mw += xp.matmul(q4, v.reshape(a2, G, Cg, t).transpose(0, 1, 3, 2))
            if need_gx:
                z = _buffer(xp, "z", (a2, C, t), x.dtype)
                xp.matmul(u.transpose(0, 1, 3, 2), q4, out=z.reshape(a2, G, Cg, t))
                tf.grad_input(z, ph, pw, th, tw, m, gx[n0:n1])
    gw = None
    if need_gw:
        _, g, _ = float_matrices(m, x.dtype)
        g = xp.asarray(g)
        mw = mw.reshape(m + 2, m + 2, K, Cg).transpose(2, 3, 0, 1)
        gw = xp.ascontiguousarray(xp.matmul(xp.matmul(g.T, mw), g))
    gb = gy.sum(axis=(0, 2, 3)) if need_gb else None
    return gx, gw, gb


ALGORITHMS = ("auto", "im2col", "winograd")


def choose(algorithm, x_shape, w_shape, stride, padding, groups, dtype, gpu=False):
    """The tile m for conv2d's ``algorithm`` on this layer shape, or None for im2col.

    "winograd" on a shape it cannot run raises ValueError naming the reason; "auto" falls back.
    """
    if algorithm == "auto":
        if _numba.MISSING is not None and not gpu:  # the transforms would run as plain Python
            return None
        return auto_choice(x_shape, w_shape, stride, padding, groups, dtype) if AUTO_ON_GPU or not gpu else None
    if algorithm == "im2col":
        return None
    if algorithm == "winograd":
        reason = unsupported(x_shape, w_shape, stride, dtype)
        if reason:
            raise ValueError(f"conv2d: algorithm='winograd' cannot run this convolution: {reason}; "
                             f"use algorithm='im2col' or 'auto'")
        return best_tile(x_shape[2] + 2 * padding[0] - 2, x_shape[3] + 2 * padding[1] - 2)
    raise ValueError(f"conv2d: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
