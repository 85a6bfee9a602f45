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
# Each 2-D transform L X R^T runs as two passes of a 1-D transform, each vectorised over many tiles
# at once (pass 1 along w, pass 2 along h; see the tile order below). The inner loops then run
# without branches (padding is copied in first), which LLVM vectorises: 2-3x faster than one whole
# tile at a time, and the longer the runs the better.
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


# Tile order on the CPU: q = (ty*tw + tx)*n + i for image i of a chunk of n images (the GPU kernels
# use (i*th + ty)*tw + tx; the GEMMs do not care, as long as a device's four transforms agree). With
# the image innermost, every pass of a transform runs over one channel's tiles of the whole chunk as
# a few long unit-stride vectors: over a tile row of one image (tw = 4-8 tiles at 16x16-32x32
# inputs) the calls were short, most of each AVX-512 loop fell into its scalar remainder, and the
# transforms took longer than the GEMMs they feed. The price is a transpose per channel between the
# image-outermost arrays and the image-innermost scratch; measured (single thread, 64 channels, 32x32,
# ns per tile and channel) the input transform went 48 -> 22 (pass 1 alone 12 -> 2 as one call
# instead of one per row; the transpose 18 -> 8 with its scattered offsets from a table, as an
# integer division by a run-time m or the index arithmetic cost more than the load and store).
# Each worker thread handles whole channels (planes never share outputs: no atomics) and allocates
# its scratch once; the zero padding of its buffers is written once, later channels overwrite only
# the interior. Every loop indexes flat arrays with unsigned integers (see _vec).

_IB = u64(8)  # the transposes go 8 images at a time, so that the scratch lines they fill stay in L1


@njit(cache=True, inline="always")
def _input_channel(x, xc, ph, pw, th, tw, m, v, vc, pad, rows, off):
    """V[:, vc, :] = B^T d B for every tile of channel xc of the chunk x (n, C, H, W), padded by (ph, pw).

    pad (m*P + n,), P = hp*(tw + 1)*n: the channel padded, its columns split by phase, the image
    innermost: pad[f*P + (r*(tw + 1) + j)*n + i] = padded x[i, xc, r, j*m + f]. Input k of tile
    (ty, tx) along w is then at phase k % m, block tx + k // m: for fixed k, linear over all
    (r, tx, i), so pass 1 is one call, computing a junk tile column tx = tw that pass 2 skips (and
    reading up to n past the end, hence the slack). rows (alpha*P,): pass 1's output, as pad.
    off ((tw + 1)*m,): pad offset of each padded column. A negative padding crops (5x5 kernels).
    """
    N, C, H, W = x.shape
    a = m + 2
    hp, L = th * m + 2, tw + 1
    Cv, T, P = v.shape[1], v.shape[2], hp * L * N
    run = tw * N                        # one tile row of every image
    xf, vf = x.reshape(-1), v.reshape(-1)
    uN, uHW, urow = u64(N), u64(H * W), u64(L * N)
    wa, wb = max(0, -pw), min(W, L * m - pw)
    for i0 in range(u64(0), uN, _IB):   # transpose in: read rows of x, write image-innermost
        for h in range(max(0, -ph), min(H, hp - ph)):
            rb = u64(h + ph) * urow
            for i in range(i0, min(uN, i0 + _IB)):
                xb, db = (i * u64(C) + u64(xc)) * uHW + u64(h * W), rb + i
                for w in range(wa, wb):
                    pad[db + off[u64(w + pw)]] = xf[xb + u64(w)]
    _vec(0, m, pad, 0, _split(m, N, P), 1, rows, 0, _even(P), 1, P)   # B^T along w
    for ty in range(th):  # then B^T along h: V[i*a + j, vc, ty*run:]
        for j in range(a):
            _vec(0, m, rows, j * P + ty * m * L * N, _even(L * N), 1, vf, (j * Cv + vc) * T + ty * run,
                 _even(a * Cv * T), 1, run)


@njit(cache=True, inline="always")
def _pixel_offsets(n, m, phase, block):
    """(n,): offset of pixel w = 0..n-1 of a row in an array split by phase: (w % m)*phase + (w // m)*block."""
    sh, lo = _shift(m), u64(m - 1)
    off = np.empty(n, dtype=np.uint64)
    for w in range(u64(n)):
        off[w] = (w & lo) * u64(phase) + (w >> sh) * u64(block)
    return off


@njit(cache=True, inline="always")
def _output_channel(mm, b, k, th, tw, m, y, rows, out, off):
    """y[:, k] = A^T M A per tile, cropped, plus b[k], for output channel k of the chunk y (n, K, oh, ow).

    rows (alpha, m, T): A^T along w; out (m, m, T): out[yy, xx, q], the tiles' pixels;
    off (ow,): offset in out of each output column (xx = w % m, tx = w // m).
    """
    N, K, oh, ow = y.shape
    a = m + 2
    T = mm.shape[2]
    mf, rf, of, yf = mm.reshape(-1), rows.reshape(-1), out.reshape(-1), y.reshape(-1)
    for i in range(a):
        _vec(1, m, mf, (i * a * K + k) * T, _even(K * T), 1, rf, i * m * T, _even(T), 1, T)
    for xx in range(m):
        _vec(1, m, rf, xx * T, _even(m * T), 1, of, xx * T, _even(m * T), 1, T)
    bias = b[k] if b.shape[0] > 0 else y.dtype.type(0)  # an int 0 would make the sum float64
    sh, lo, uN, uT, uow = _shift(m), u64(m - 1), u64(N), u64(T), u64(ow)
    rstep = u64(m) * uT
    for i0 in range(u64(0), uN, _IB):   # transpose out, cropped to (oh, ow)
        for h in range(u64(oh)):
            for i in range(i0, min(uN, i0 + _IB)):
                yb = ((i * u64(K) + u64(k)) * u64(oh) + h) * uow
                ob = (h & lo) * rstep + (h >> sh) * u64(tw) * uN + i
                for w in range(uow):
                    yf[yb + w] = of[ob + off[w]] + bias


@njit(cache=True, inline="always")
def _grad_output_channel(gy, k, th, tw, m, qq, pad, rows, off):
    """Q[:, k, :] = A gy A^T per tile (gy zero past the output edge), for channel k of the chunk gy.

    pad (m, m, T): gy's tile pixels, pad[yy, xx, q] (zero past the edge); rows (m, alpha, T);
    off (ow,): as in _output_channel.
    """
    N, K, oh, ow = gy.shape
    a = m + 2
    T = qq.shape[2]
    gf, pf, rf, qf = gy.reshape(-1), pad.reshape(-1), rows.reshape(-1), qq.reshape(-1)
    sh, lo, uN, uT, uow = _shift(m), u64(m - 1), u64(N), u64(T), u64(ow)
    rstep = u64(m) * uT
    for i0 in range(u64(0), uN, _IB):   # transpose in
        for h in range(u64(oh)):
            for i in range(i0, min(uN, i0 + _IB)):
                gb = ((i * u64(K) + u64(k)) * u64(oh) + h) * uow
                pb = (h & lo) * rstep + (h >> sh) * u64(tw) * uN + i
                for w in range(uow):
                    pf[pb + off[w]] = gf[gb + w]
    for yy in range(m):   # A along w: rows[yy, j]
        _vec(2, m, pf, yy * m * T, _even(T), 1, rf, yy * a * T, _even(T), 1, T)
    for j in range(a):    # then along h: Q[i*a + j, k]
        _vec(2, m, rf, j * T, _even(a * T), 1, qf, (j * K + k) * T, _even(a * K * T), 1, T)


@njit(cache=True, inline="always")
def _grad_input_channel(z, zc, ph, pw, th, tw, m, gx, xc, add, pad, rows, out, off):
    """gx[:, xc] (+)= the sum over tiles of B Z[:, zc] B^T at the tile's place, padding (ph, pw) dropped.

    rows (alpha, alpha, T): B along w. out (alpha, alpha, Q), Q = th*(tw + 1)*n: then along h,
    out[r, s] tile (ty, tx)'s gradient at pixel (r, s), at (ty*(tw + 1) + tx)*n + i (the column
    tx = tw stays zero). pad (m, m, th + 1, tw + 1, n) + slack: the padded channel split by phase
    along both axes, the image innermost; pixel (r, s) of every tile is then one linear run of it,
    so the overlapping tiles are summed in alpha^2 calls. off ((tw + 1)*m,): pad offset of each
    padded column. add: add into gx (the other 5x5 crops), else overwrite it, zero outside the tiles.
    """
    N, C, H, W = gx.shape
    a = m + 2
    Cz, T = z.shape[1], z.shape[2]
    hp, L = th * m + 2, tw + 1
    run, LN = tw * N, L * N
    Q = th * LN                         # out's run per pixel
    zf, gf = z.reshape(-1), gx.reshape(-1)
    for i in range(a):
        _vec(3, m, zf, (i * a * Cz + zc) * T, _even(Cz * T), 1, rows, i * a * T, _even(T), 1, T)
    for ty in range(th):
        for s in range(a):
            _vec(3, m, rows, s * T + ty * run, _even(a * T), 1, out, s * Q + ty * LN, _even(a * Q), 1, run)
    pad[:] = 0
    uQ = u64(Q)
    for r in range(a):    # the tiles summed, pixel by pixel: (r, s) sits at phase (r % m, s % m), block + (r // m, s // m)
        for s in range(a):
            pb = u64((((r % m) * m + s % m) * (th + 1) + r // m) * LN + (s // m) * N)
            ob = u64((r * a + s) * Q)
            for t in range(uQ):
                pad[pb + t] += out[ob + t]
    zero = gx.dtype.type(0)
    sh, lo, uN, uW, uLN = _shift(m), u64(m - 1), u64(N), u64(W), u64(LN)
    wa, wb = max(0, -pw), max(0, min(W, tw * m + 2 - pw))   # the columns the tiles cover
    for i0 in range(u64(0), uN, _IB):   # transpose out, padding dropped
        for h in range(H):
            inside = 0 <= h + ph < hp
            row = u64(h + ph) if inside else u64(0)
            rb = ((row & lo) * u64(m * (th + 1)) + (row >> sh)) * uLN
            for i in range(i0, min(uN, i0 + _IB)):
                gb = ((i * u64(C) + u64(xc)) * u64(H) + u64(h)) * uW
                if not inside:
                    if not add:
                        for w in range(uW):
                            gf[gb + w] = zero
                    continue
                if add:
                    for w in range(wa, wb):
                        gf[gb + u64(w)] += pad[rb + off[u64(w + pw)] + i]
                else:
                    for w in range(wa):
                        gf[gb + u64(w)] = zero
                    for w in range(wa, wb):
                        gf[gb + u64(w)] = pad[rb + off[u64(w + pw)] + i]
                    for w in range(wb, W):
                        gf[gb + u64(w)] = zero


@njit(cache=True, inline="always")
def _shift(m):
    """log2(m) for the tile sizes here (2, 4): k // m and k % m as a shift and a mask (an integer
    division by a run-time m in the transposes' inner loops cost more than the rest of a transform)."""
    return u64(1) if m == 2 else u64(2)


# One worker per thread: numba.prange over ``workers`` contiguous ranges of channels. Small calls run
# serially (the _ser kernels): waking the thread pool costs more than they do (as in cpu.py).
# 5x5 kernels (five=True): V has channels (g, s, c), crop s of channel (g, c) (winograd.SUB_OFFSETS):
# the input transform reads it straight from x, with the padding less the crop's offset, instead of
# from a stacked copy 4x the input; the input gradient sums the four crops' gradients into gx.
@njit(cache=True, inline="always")
def _crop(s):
    """The (dy, dx) offset of 5x5 crop s (winograd.SUB_OFFSETS)."""
    return 3 * (s // 2), 3 * (s % 2)


@njit(cache=True, inline="always")
def _input_range(x, ph, pw, th, tw, m, v, c0, c1, groups, five):
    N, Cg = x.shape[0], x.shape[1] // groups
    P = (th * m + 2) * (tw + 1) * N
    pad = np.zeros(m * P + N, dtype=v.dtype)
    rows = np.empty((m + 2) * P, dtype=v.dtype)
    off = _pixel_offsets((tw + 1) * m, m, P, N)
    last = -1
    for vc in range(c0, c1):
        xc, dy, dx = vc, 0, 0
        if five:
            g, s, c = vc // (4 * Cg), (vc // Cg) % 4, vc % Cg
            if s != last and last >= 0:   # another crop fills other places of pad: clear it
                pad[:] = 0
            last = s
            xc = g * Cg + c
            dy, dx = _crop(s)
        # one call site: the inlined transform is compiled once (two doubled the compile time)
        _input_channel(x, xc, ph - dy, pw - dx, th, tw, m, v, vc, pad, rows, off)


@njit(cache=True, inline="always")
def _output_range(mm, b, th, tw, m, y, k0, k1):
    T = mm.shape[2]
    rows = np.empty((m + 2, m, T), dtype=mm.dtype)
    out = np.empty((m, m, T), dtype=mm.dtype)
    off = _pixel_offsets(y.shape[3], m, T, y.shape[0])
    for k in range(k0, k1):
        _output_channel(mm, b, k, th, tw, m, y, rows, out, off)


@njit(cache=True, inline="always")
def _grad_output_range(gy, th, tw, m, qq, k0, k1):
    T = qq.shape[2]
    pad = np.zeros((m, m, T), dtype=qq.dtype)
    rows = np.empty((m, m + 2, T), dtype=qq.dtype)
    off = _pixel_offsets(gy.shape[3], m, T, gy.shape[0])
    for k in range(k0, k1):
        _grad_output_channel(gy, k, th, tw, m, qq, pad, rows, off)


@njit(cache=True, inline="always")
def _grad_input_range(z, ph, pw, th, tw, m, gx, c0, c1, groups, five):
    N, Cg, T = gx.shape[0], gx.shape[1] // groups, z.shape[2]
    a, LN = m + 2, (tw + 1) * N
    pad = np.empty(m * m * (th + 1) * LN + N, dtype=z.dtype)
    rows = np.empty(a * a * T, dtype=z.dtype)
    out = np.zeros(a * a * th * LN, dtype=z.dtype)   # its junk column is never written: zero once
    off = _pixel_offsets((tw + 1) * m, m, (th + 1) * LN, N)
    crops = 4 if five else 1
    for xc in range(c0, c1):
        g, c = xc // Cg, xc % Cg
        for s in range(crops):   # one call site, as in _input_range
            dy, dx = _crop(s) if five else (0, 0)
            zc = (g * 4 + s) * Cg + c if five else xc
            _grad_input_channel(z, zc, ph - dy, pw - dx, th, tw, m, gx, xc, s > 0, pad, rows, out, off)


@njit(cache=True, parallel=True)
def _input_par(x, ph, pw, th, tw, m, v, groups, five, workers):
    P = v.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _input_range(x, ph, pw, th, tw, m, v, wk * per, min(P, (wk + 1) * per), groups, five)


@njit(cache=True, nogil=True)
def _input_ser(x, ph, pw, th, tw, m, v, groups, five):
    _input_range(x, ph, pw, th, tw, m, v, 0, v.shape[1], groups, five)


@njit(cache=True, parallel=True)
def _output_par(mm, b, th, tw, m, y, workers):
    P = y.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _output_range(mm, b, th, tw, m, y, wk * per, min(P, (wk + 1) * per))


@njit(cache=True, nogil=True)
def _output_ser(mm, b, th, tw, m, y):
    _output_range(mm, b, th, tw, m, y, 0, y.shape[1])


@njit(cache=True, parallel=True)
def _grad_output_par(gy, th, tw, m, qq, workers):
    P = gy.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _grad_output_range(gy, th, tw, m, qq, wk * per, min(P, (wk + 1) * per))


@njit(cache=True, nogil=True)
def _grad_output_ser(gy, th, tw, m, qq):
    _grad_output_range(gy, th, tw, m, qq, 0, gy.shape[1])


@njit(cache=True, parallel=True)
def _grad_input_par(z, ph, pw, th, tw, m, gx, groups, five, workers):
    P = gx.shape[1]
    per = -(-P // workers)
    for wk in prange(workers):
        _grad_input_range(z, ph, pw, th, tw, m, gx, wk * per, min(P, (wk + 1) * per), groups, five)


@njit(cache=True, nogil=True)
def _grad_input_ser(z, ph, pw, th, tw, m, gx, groups, five):
    _grad_input_range(z, ph, pw, th, tw, m, gx, 0, gx.shape[1], groups, five)


PARALLEL_MIN_SIZE = 1 << 16


def _threads():
    return _numba.numba.get_num_threads() if _numba.numba is not None else 1


class _CpuTransforms:
    """The four tile transforms on NumPy arrays (Numba); outputs are written into the given arrays.

    A large call is split across Numba's threads; ``one_thread`` is the same four for callers that
    already run one piece of the batch per thread (they release the GIL).
    """

    xp = np

    five = True   # reads and writes 5x5 crops in place (see _input_range)
    prange = True

    @classmethod
    def input(cls, x, ph, pw, th, tw, m, v, groups=1, five=False):
        if cls.prange and v.size >= PARALLEL_MIN_SIZE:
            _input_par(x, ph, pw, th, tw, m, v, groups, five, _threads())
        else:
            _input_ser(x, ph, pw, th, tw, m, v, groups, five)

    @classmethod
    def output(cls, mm, b, th, tw, m, y):
        b = np.empty(0, dtype=y.dtype) if b is None else np.ascontiguousarray(b)
        if cls.prange and mm.size >= PARALLEL_MIN_SIZE:
            _output_par(mm, b, th, tw, m, y, _threads())
        else:
            _output_ser(mm, b, th, tw, m, y)

    @classmethod
    def grad_output(cls, gy, th, tw, m, qq):
        if cls.prange and qq.size >= PARALLEL_MIN_SIZE:
            _grad_output_par(gy, th, tw, m, qq, _threads())
        else:
            _grad_output_ser(gy, th, tw, m, qq)

    @classmethod
    def grad_input(cls, z, ph, pw, th, tw, m, gx, groups=1, five=False):
        if cls.prange and z.size >= PARALLEL_MIN_SIZE:
            _grad_input_par(z, ph, pw, th, tw, m, gx, groups, five, _threads())
        else:
            _grad_input_ser(z, ph, pw, th, tw, m, gx, groups, five)


class _CpuTransformsOneThread(_CpuTransforms):
    prange = False


_CpuTransforms.one_thread = _CpuTransformsOneThread


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


