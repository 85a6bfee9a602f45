"""Winograd convolution F(m x m, 3 x 3) for 3x3 (and 5x5), stride-1 layers: forward and both gradients.

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
from fractions import Fraction

import numpy as np

from minidl.kernels import _numba, blas, winograd_transforms, workspace
from minidl.kernels.winograd_transforms import _CpuTransforms, _gpu_transforms

# ==== the matrices, derived by Toom-Cook from interpolation points ====================================
# Points 0, +-1 (F(2,3)) and 0, +-1, +-2 (F(4,3)), plus the point at infinity: integers keep the
# transforms exact in binary for the small values, and these are Lavin & Gray's choice. (0, +-1,
# 1/2, -2 measured about 3x smaller errors for F(4,3) but needs B^T entries up to 32.)
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}
TILES = tuple(POINTS)  # the m this module implements
assert TILES == winograd_transforms.TILES


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
    if tuple(w_shape[2:]) not in ((3, 3), (5, 5)):
        return (f"kernel {w_shape[2]}x{w_shape[3]} (Winograd here is F(m x m, 3 x 3): 3x3 kernels, and 5x5 "
                f"as four 3x3 sub-kernels)")
    if tuple(stride) != (1, 1):
        return f"stride {tuple(stride)} (Winograd tiles need stride 1)"
    if dtype is not None and np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return f"dtype {np.dtype(dtype)} (float32 or float64 only)"
    return None


def output_size(x_shape, w_shape, padding):
    """(oh, ow) of a stride-1 convolution."""
    return (x_shape[2] + 2 * padding[0] - w_shape[2] + 1, x_shape[3] + 2 * padding[1] - w_shape[3] + 1)


def best_tile(oh, ow):
    """The m (2 or 4) with the fewest GEMM multiplies, alpha^2 * tiles, for an oh x ow output.

    F(4,3) wins except where its partly empty tiles cost more (2x2, 6x6...); ties go to F(2,3),
    the more accurate.
    """
    return min(TILES, key=lambda m: ((m + 2) ** 2 * math.prod(tiles(oh, ow, m)), m))


# The ``auto`` rule, from measured fwd+bwd times against im2col (benchmarks/RESULTS.md, CPU). Where
# Winograd wins depends on the machine: the transforms are memory-bound passes over arrays 2.25x
# the activations, while the GEMMs they shrink run at whatever the BLAS reaches. With the transforms
# over the whole chunk's tiles and the batched GEMMs split across threads (2026-12-03, 2-core AMD
# EPYC with AVX-512, OpenBLAS SkylakeX kernels; `cpu.py --rows sweep` and a grid of smaller shapes),
# 3x3 Winograd / im2col measured 0.35-0.58x from 8x8 to 56x56 at 64-256 channels, 0.37-0.61x at
# 16 and 32 channels, 0.51-0.61x on 4x4 and 7x7 outputs, 1.04x on 10x10 (its tiles a third empty),
# and 1.06x with 3 input channels. Small batches pay per-call costs: from 512 tiles up it won in
# every shape measured, below that it ranged from 0.64x to 1.41x. (Before these changes it lost at
# 64 channels and on 8x8, and the rule asked for 64 channels and 12x12.) So: both channel counts
# >= 16 and >= 512 tiles in the batch. Re-derive on another machine with --rows sweep / --rows
# winograd. float64 keeps im2col: auto promises float64 results unchanged.
AUTO_MIN_CHANNELS = 16
AUTO_MIN_TILES = 512
# 5x5 kernels run as a 3x3 convolution of 4x the input channels (below): the GEMMs shrink 2.8x, but
# 4x the input is transformed. Winograd / im2col, fwd + bwd (`cpu.py --rows sweep5` and the grid,
# 2026-12-03, same EPYC; N, C, H, K): 0.63-0.70x at 27x27 (32x96, 32x128, 16x192 -> 256; 32x96 ->
# 128), 0.69x at 56x56, 0.75x grouped (AlexNet's conv2), 0.64-0.80x at 16x16-32x32 with 16-64
# channels and 512 tiles or more (the CIFAR-10 net's conv2, 128x64 -> 64 at 16x16: 0.72x), but
# 1.01-1.22x at 13x13 (64 and 256 channels), 1.22-2.13x at 7x7 and 1.21-1.90x at 16x16 with 32-128
# tiles. So for 5x5, also >= 16x16 output pixels.
AUTO_5X5_MIN_PIXELS = 256
# On the GPU "auto" keeps im2col until a lent GPU has measured the CUDA transforms (benchmarks/gpu.py
# compares algorithm="winograd" with "im2col" on VGG16); none was lent when they were written.
AUTO_ON_GPU = False


def auto_choice(x_shape, w_shape, stride, padding, groups, dtype):
    """The m (2 or 4) that ``algorithm="auto"`` runs with Winograd, or None for im2col."""
    if np.dtype(dtype) != np.float32 or unsupported(x_shape, w_shape, stride, dtype):
        return None
    oh, ow = output_size(x_shape, w_shape, padding)
    if min(x_shape[1] // groups, w_shape[0] // groups) < AUTO_MIN_CHANNELS:
        return None
    if w_shape[2] == 5 and oh * ow < AUTO_5X5_MIN_PIXELS:
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


def _transforms(x):
    from minidl import backend
    if backend._is_cupy_array(x):
        import cupy
        return _gpu_transforms(cupy)
    return _CpuTransforms


# ==== the driver, the same on both devices ============================================================
@functools.lru_cache(maxsize=None)
def _filter_matrix(m, dtype):
    """G (x) G, (alpha^2, 9): row i*alpha + j maps a 3x3 filter, flattened, to (G w G^T)[i, j]."""
    _, g, _ = float_matrices(m, np.float64)
    return np.kron(g, g).astype(dtype)


def _filter_transform(xp, w, m):
    """U (alpha^2, K, C/groups) = G w G^T at each transform point.

    One (alpha^2, 9) @ (9, K*C) GEMM writes U in the layout the tile GEMMs read; the obvious
    ``g @ w @ g.T`` broadcast over K*C tiny 3x3 matrices took longer than the whole forward GEMM
    (29 ms against 14 ms at 256 -> 384 channels).
    """
    K, Cg = w.shape[:2]
    kron = xp.asarray(_filter_matrix(m, np.dtype(w.dtype)))
    return xp.matmul(kron, w.reshape(K * Cg, 9).T).reshape(-1, K, Cg)


def _filter_gradient(xp, mw, m):
    """gw (K, C/groups, 3, 3) = G^T MW G from MW (alpha^2, K, C/groups): the adjoint of the above."""
    a2, K, Cg = mw.shape
    kron = xp.asarray(_filter_matrix(m, np.dtype(mw.dtype)))
    return xp.matmul(mw.reshape(a2, K * Cg).T, kron).reshape(K, Cg, 3, 3)


# ==== 5x5 kernels: four 3x3 sub-kernels, one 3x3 Winograd convolution ============================
# A 5x5 kernel, padded with zeros to 6x6, is four 3x3 sub-kernels w_s at offsets s = (0,0), (0,3),
# (3,0), (3,3): y = sum_s conv3x3(x at offset s, w_s). Stacking the four offset crops of the padded
# input as channels makes that sum one valid 3x3 convolution with 4x the input channels, which the
# F(m, 3) code above runs. Its GEMMs do 4 * 36/16 = 9 multiplies per output (F(4,3)) against 25
# directly, for the price of transforming 4x the input. Backward is the adjoint: the 3x3 gradients
# of the stack, summed back at their offsets.
SUB_OFFSETS = ((0, 0), (0, 3), (3, 0), (3, 3))


def _crop_windows(H, W, padding, oh, ow):
    """Per offset s: (rows of the crop, rows of x, cols of the crop, cols of x) that overlap, as slices."""
    ph, pw = padding
    out = []
    for dy, dx in SUB_OFFSETS:
        # crop row i is padded row dy + i, x row dy + i - ph; the crop has oh + 2 rows
        i0, i1 = max(0, ph - dy), min(oh + 2, H + ph - dy)
        j0, j1 = max(0, pw - dx), min(ow + 2, W + pw - dx)
        out.append(None if i1 <= i0 or j1 <= j0 else
                   (slice(i0, i1), slice(i0 + dy - ph, i1 + dy - ph), slice(j0, j1), slice(j0 + dx - pw, j1 + dx - pw)))
    return out


def _stack_crops(xp, x, padding, groups, oh, ow):
    """x (N, C, H, W) -> (N, 4C, oh + 2, ow + 2): channel (g, s, c) is channel (g, c) of the zero-padded x at offset s."""
    N, C, H, W = x.shape
    G, Cg = groups, C // groups
    out = xp.zeros((N, G, 4, Cg, oh + 2, ow + 2), dtype=x.dtype)
    xg = x.reshape(N, G, Cg, H, W)
    for s, win in enumerate(_crop_windows(H, W, padding, oh, ow)):
        if win:
            ci, xi, cj, xj = win
            out[:, :, s, :, ci, cj] = xg[:, :, :, xi, xj]
    return out.reshape(N, 4 * C, oh + 2, ow + 2)


def _unstack_crops(xp, g4, x_shape, padding, groups):
    """The adjoint of _stack_crops: each crop's gradient added back at its offset, padding dropped."""
    N, C, H, W = x_shape
    G, Cg = groups, C // groups
    oh, ow = g4.shape[2] - 2, g4.shape[3] - 2
    g4 = g4.reshape(N, G, 4, Cg, oh + 2, ow + 2)
    gx = xp.zeros((N, G, Cg, H, W), dtype=g4.dtype)
    for s, win in enumerate(_crop_windows(H, W, padding, oh, ow)):
        if win:
            ci, xi, cj, xj = win
            gx[:, :, :, xi, xj] += g4[:, :, s, :, ci, cj]
    return gx.reshape(N, C, H, W)


def _stack_weights(xp, w):
    """w (K, C/groups, 5, 5) -> (K, 4C/groups, 3, 3): channel (s, c) is sub-kernel s of channel c."""
    K, Cg = w.shape[:2]
    w6 = xp.zeros((K, Cg, 6, 6), dtype=w.dtype)
    w6[:, :, :5, :5] = w
    return xp.stack([w6[:, :, dy:dy + 3, dx:dx + 3] for dy, dx in SUB_OFFSETS], axis=1).reshape(K, 4 * Cg, 3, 3)


def _unstack_weights(xp, g4):
    """The adjoint of _stack_weights: (K, 4C/groups, 3, 3) -> (K, C/groups, 5, 5)."""
    K, Cg = g4.shape[0], g4.shape[1] // 4
    g6 = xp.zeros((K, Cg, 6, 6), dtype=g4.dtype)
    g4 = g4.reshape(K, 4, Cg, 3, 3)
    for s, (dy, dx) in enumerate(SUB_OFFSETS):
        g6[:, :, dy:dy + 3, dx:dx + 3] += g4[:, s]
    return xp.ascontiguousarray(g6[:, :, :5, :5])


def _as_3x3(xp, x, w, padding, groups):
    """(x4, w4): the 5x5 convolution of x by w as a valid 3x3 one (see above)."""
    oh, ow = output_size(x.shape, w.shape, padding)
    return _stack_crops(xp, x, padding, groups, oh, ow), _stack_weights(xp, w)


def forward(x, w, b, padding, groups=1, m=4):
    """x (N, C, H, W) * w (K, C/groups, 3 or 5, same) + b (K,) or None -> y (N, K, oh, ow), stride 1.

    padding: (ph, pw); m: the output tile, 2 for F(2x2, 3x3) or 4 for F(4x4, 3x3).
    """
    tf = _transforms(x)
    xp = tf.xp
    x = xp.ascontiguousarray(x)
    if w.shape[2] == 5:
        if getattr(tf, "five", False):   # the CPU transforms read the crops from x itself
            return _forward(tf, x, _stack_weights(xp, w), b, padding, groups, m, five=True)
        x4, w4 = _as_3x3(xp, x, w, padding, groups)
        return _forward(tf, x4, w4, b, (0, 0), groups, m)
    return _forward(tf, x, w, b, padding, groups, m)


# CPU: a layer whose transformed filters are small (the 64-channel ones) goes through the batch in
# pieces of a few images, each thread transforming, multiplying and transforming back its own piece
# while it is in cache, instead of each step being split across threads over a whole 64 MiB chunk
# and streamed through memory in between (64->64 channels at 32x32, b128: forward 35 -> 28 ms, backward
# 80 -> 68; benchmarks/RESULTS.md). With large filters each piece would re-read U from memory:
# those keep the chunks.
PIECES = True
PIECE_BYTES = 4 * 2 ** 20          # a piece's V, M (and Q) together, per thread
PIECE_MAX_FILTER_BYTES = 2 * 2 ** 20


def _pieces(tf, n, bytes_per_image, filter_bytes):
    """[(start, stop), ...] of a few images each for one thread apiece, or None where chunks are run."""
    if (not PIECES or getattr(tf, "one_thread", None) is None or filter_bytes > PIECE_MAX_FILTER_BYTES
            or bytes_per_image > PIECE_BYTES):
        return None
    step = PIECE_BYTES // bytes_per_image
    return [(s, min(s + step, n)) for s in range(0, n, step)] if n > step else None


def _forward(tf, x, w, b, padding, groups, m, five=False):
    """forward with a 3x3 w (K, Cv/groups, 3, 3); five: x's channels are the 5x5 crops' (Cv = 4C)."""
    xp = tf.xp
    ph, pw = padding
    N, C, H, W = x.shape
    K, G, a2, r = w.shape[0], groups, (m + 2) ** 2, 5 if five else 3
    Cv = G * w.shape[1]
    oh, ow = H + 2 * ph - r + 1, W + 2 * pw - r + 1
    th, tw = tiles(oh, ow, m)
    u = _filter_transform(xp, w, m).reshape(a2, G, K // G, Cv // G)
    y = xp.empty((N, K, oh, ow), dtype=x.dtype)
    extra = (G, True) if five else ()   # the CPU input transform's 5x5 arguments

    def chunk(tf, n0, n1):
        t = (n1 - n0) * th * tw
        (v, mm), _ = workspace.arena(xp, [((a2, Cv, t), x.dtype), ((a2, K, t), x.dtype)])
        tf.input(x[n0:n1], ph, pw, th, tw, m, v, *extra)
        blas.matmul(u, v.reshape(a2, G, Cv // G, t), out=mm.reshape(a2, G, K // G, t))
        tf.output(mm, b, th, tw, m, y[n0:n1])

    per_image = a2 * (Cv + K) * th * tw * x.itemsize
    pieces = _pieces(tf, N, per_image, u.nbytes)
    if not (pieces and blas.parallel(lambda _, i: chunk(tf.one_thread, *pieces[i]), len(pieces))):
        for n0, n1 in workspace.chunks(N, per_image, xp):
            chunk(tf, n0, n1)
    return y


def backward(x, w, gy, padding, groups=1, m=4, need_gx=True, need_gw=True, need_gb=True):
    """(gx, gw, gb) of ``forward`` for gy (N, K, oh, ow); None for those not needed."""
    tf = _transforms(gy)
    xp = tf.xp
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    if w.shape[2] == 5:
        if getattr(tf, "five", False):
            gx, gw4, gb = _backward(tf, x, _stack_weights(xp, w), gy, padding, groups, m, need_gx, need_gw,
                                    need_gb, five=True)
            return gx, _unstack_weights(xp, gw4) if need_gw else None, gb
        # the stack is rebuilt rather than kept from forward: it is 4x the input
        x4, w4 = _as_3x3(xp, x, w, padding, groups)
        gx4, gw4, gb = _backward(tf, x4, w4, gy, (0, 0), groups, m, need_gx, need_gw, need_gb)
        return (_unstack_crops(xp, gx4, x.shape, padding, groups) if need_gx else None,
                _unstack_weights(xp, gw4) if need_gw else None, gb)
    return _backward(tf, x, w, gy, padding, groups, m, need_gx, need_gw, need_gb)


def _backward(tf, x, w, gy, padding, groups, m, need_gx, need_gw, need_gb, five=False):
    """backward of _forward: gw is the 3x3 (stacked, when five) weights' gradient."""
    xp = tf.xp
    ph, pw = padding
    N, C, H, W = x.shape
    K, G, a2 = w.shape[0], groups, (m + 2) ** 2
    Cv = G * w.shape[1]
    Kg, Cg = K // G, Cv // G
    oh, ow = gy.shape[2:]
    th, tw = tiles(oh, ow, m)
    u = _filter_transform(xp, w, m).reshape(a2, G, Kg, Cg) if need_gx else None
    gx = xp.empty(x.shape, dtype=x.dtype) if need_gx else None
    extra = (G, True) if five else ()

    def chunk(tf, n0, n1, mw, add, in_cache=False):
        """gx[n0:n1] and, into mw (added to it if add), these images' share of the MW sums."""
        t = (n1 - n0) * th * tw
        (qq, v, z), _ = workspace.arena(xp, [((a2, K, t), x.dtype), ((a2, Cv, t), x.dtype), ((a2, Cv, t), x.dtype)])
        tf.grad_output(gy[n0:n1], th, tw, m, qq)
        q4 = qq.reshape(a2, G, Kg, t)
        if need_gw:
            tf.input(x[n0:n1], ph, pw, th, tw, m, v, *extra)   # recomputed: cheaper than keeping V alive
            vt = v.reshape(a2, G, Cg, t).transpose(0, 1, 3, 2)
            if in_cache:   # a transposed copy into z (unused until below) makes the product NN: 1.6x
                zt = z.reshape(a2, G, t, Cg)   # faster for 64x64 outputs; the large layers' run alike
                np.copyto(zt, vt)
                vt = zt
            blas.matmul(q4, vt, out=mw, accumulate=add)
        if need_gx:
            blas.matmul(u.transpose(0, 1, 3, 2), q4, out=z.reshape(a2, G, Cg, t))
            tf.grad_input(z, ph, pw, th, tw, m, gx[n0:n1], *extra)

    mw = None
    if need_gx or need_gw:
        per_image = a2 * (2 * Cv + K) * th * tw * x.itemsize
        pieces = _pieces(tf, N, per_image, a2 * K * Cg * x.itemsize)
        sums = {}   # worker -> its MW sum: added up in worker order, so the result does not depend on timing

        def piece(worker, i):
            first = worker not in sums
            mine = sums.setdefault(worker, xp.empty((a2, G, Kg, Cg), dtype=x.dtype) if need_gw else None)
            chunk(tf.one_thread, *pieces[i], mine, not first, in_cache=True)
        if pieces and blas.parallel(piece, len(pieces)):
            if need_gw:
                mw = sums[0]
                for k in range(1, len(sums)):
                    mw += sums[k]
        else:
            mw = xp.empty((a2, G, Kg, Cg), dtype=x.dtype) if need_gw else None
            for n0, n1 in workspace.chunks(N, per_image, xp):
                chunk(tf, n0, n1, mw, n0 > 0)   # the first chunk writes MW, the others add to it
    gw = None
    if need_gw:
        gw = _filter_gradient(xp, mw.reshape(a2, K, Cg), m)
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
        return best_tile(*output_size(x_shape, w_shape, padding))
    raise ValueError(f"conv2d: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
