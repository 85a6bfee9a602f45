"""minidl/kernels/winograd.py: the derived matrices, the hand-written transforms, and the Numba
forward/backward against the obvious per-tile NumPy reference (which in turn is checked against
the definition of a convolution)."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from minidl.kernels import blas, winograd as wg
from minidl.kernels import winograd_transforms as wtr, workspace


def _direct(x, w, b, ph, pw, groups):
    """The definition: y[n, k, i, j] = sum over c, u, v of w[k, c, u, v] x_pad[n, g*Cg + c, i+u, j+v] (+ b)."""
    N, C, H, W = x.shape
    K, Cg = w.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = H + 2 * ph - 2, W + 2 * pw - 2
    y = np.zeros((N, K, oh, ow))
    for k, u, v in itertools.product(range(K), range(3), range(3)):
        g = k // (K // groups)
        y[:, k] += np.einsum("nchw,c->nhw", xp[:, g * Cg:(g + 1) * Cg, u:u + oh, v:v + ow], w[k, :, u, v])
    return y + (b.reshape(1, K, 1, 1) if b is not None else 0)


@pytest.mark.parametrize("m", wg.TILES)
def test_matrices_compute_a_correlation_exactly(m):
    """y = A^T [(G g) * (B^T d)] equals y_i = sum_u g_u d_(i+u), in exact rational arithmetic."""
    at, g, bt = wg.matrices(m)
    rng = np.random.default_rng(m)
    for _ in range(5):
        gf = [Fraction(int(v)) for v in rng.integers(-9, 10, 3)]
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, m + 2)]
        prod = [sum(g[t][u] * gf[u] for u in range(3)) * sum(bt[t][j] * d[j] for j in range(m + 2))
                for t in range(m + 2)]
        y = [sum(at[i][t] * prod[t] for t in range(m + 2)) for i in range(m)]
        assert y == [sum(gf[u] * d[i + u] for u in range(3)) for i in range(m)]


def test_matrices_are_lavins_for_the_usual_points():
    """The derivation reproduces the published F(2,3) transforms (up to the sign of B^T's rows)."""
    at, g, bt = wg.float_matrices(2)
    np.testing.assert_array_equal(at, [[1, 1, 1, 0], [0, 1, -1, 1]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(np.abs(bt), [[1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 1]])
    with pytest.raises(ValueError, match="needs 5 finite points"):
        wg.matrices(4, points=(0, 1, -1))


@pytest.mark.parametrize("m", wg.TILES)
def test_hand_written_transforms_match_the_matrices(m):
    """_vec's four 1-D transforms (B^T, A^T, A, B) on strided vectors equal the derived matrices."""
    at, _, bt = wg.float_matrices(m)
    rng = np.random.default_rng(0)
    for kind, mat in enumerate((bt, at, at.T, bt.T)):
        n_out, n_in = mat.shape
        src = rng.standard_normal((n_in, 5))                 # input k of vector t at src[k, t]
        dst = np.full((5, n_out), np.nan)                    # output j of vector t at dst[t, j]
        wtr._vec(kind, m, src.reshape(-1), 0, wtr._even(5), 1, dst.reshape(-1), 0, wtr._even(1), n_out, 5)
        np.testing.assert_allclose(dst, (mat @ src).T, rtol=1e-14, atol=1e-13, err_msg=f"kind {kind}")


@pytest.mark.parametrize("m", wg.TILES)
def test_phase_split_offsets_find_each_tiles_inputs(m):
    """_split: with a row stored as pad[f, j] = row[j*m + f], tile tx's input k is at offset tx + split[k]."""
    tw = 3
    L = tw + 1
    row = np.arange(L * m, dtype=np.float64)
    pad = np.stack([row[f::m] for f in range(m)])          # (m, L)
    offsets = wtr._split(m, 1, L)
    for tx in range(tw):
        got = [pad.reshape(-1)[tx + offsets[k]] for k in range(m + 2)]
        assert got == list(row[tx * m:tx * m + m + 2])


# (N, C, H, W, K, padding, groups): odd and even sizes, outputs that are not a multiple of the
# tile, padding 0/1/2 and rectangular padding, one to several groups
SHAPES = [
    (2, 3, 7, 9, 4, (1, 1), 1),
    (1, 4, 8, 8, 6, (0, 0), 2),
    (3, 2, 5, 6, 3, (2, 2), 1),
    (1, 6, 10, 7, 6, (1, 0), 3),
    (2, 1, 3, 3, 2, (0, 0), 1),     # a single 1x1 output
    (1, 2, 4, 13, 2, (0, 2), 1),
]


@pytest.mark.parametrize("m", wg.TILES)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_is_a_convolution(shape, m):
    n, c, h, w, k, (ph, pw), groups = shape
    rng = np.random.default_rng(1)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c // groups, 3, 3)), rng.standard_normal(k)
    np.testing.assert_allclose(wg.reference_forward(x, wt, b, ph, pw, m, groups), _direct(x, wt, b, ph, pw, groups),
                               rtol=1e-12, atol=1e-12)


def _tol(dtype, want=None):
    """float32: 2e-5 of the largest value (sums over the batch are rounded in a path's own order)."""
    scale = 1.0 if want is None else max(1.0, float(np.abs(want).max()))
    return dict(rtol=2e-5, atol=2e-5 * scale) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12 * scale)


def _route(path, monkeypatch):
    """Send the CPU driver down one path: whole chunks with the "serial" or the "prange" (Numba's
    threads) transforms, or "pieces" of one image, one per BLAS thread at a time. Returns the
    worker counts of the pieces' blas.parallel calls, to check that they ran."""
    monkeypatch.setattr(wg, "PIECES", path == "pieces")
    if path == "prange":
        monkeypatch.setattr(wtr, "PARALLEL_MIN_SIZE", 0)
    ran = []
    if path == "pieces":
        threadpoolctl = pytest.importorskip("threadpoolctl")
        limits = threadpoolctl.threadpool_limits(limits=2, user_api="blas")
        if max((c.num_threads for c in blas._blas()), default=1) < 2:
            limits.restore_original_limits()
            pytest.skip("BLAS runs one thread here: no pieces")
        monkeypatch.setattr(wg, "_pieces", lambda tf, n, *_: [(i, i + 1) for i in range(n)])
        real = blas.parallel

        def recording(fn, count):
            ran.append(real(fn, count))
            return ran[-1]
        monkeypatch.setattr(blas, "parallel", recording)
        _limits.append(limits)
    return ran


_limits = []   # BLAS thread counts that _route raised, put back after each test


@pytest.fixture(autouse=True)
def _blas_threads_back():
    yield
    while _limits:
        _limits.pop().restore_original_limits()


# the parallel kernels share their per-plane code with the serial ones: a few shapes suffice for them
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", wg.TILES)
@pytest.mark.parametrize("shape,path", [(s, "serial") for s in SHAPES] + [(s, "prange") for s in SHAPES[:2]]
                         + [(s, "pieces") for s in SHAPES if s[0] > 1])
def test_numba_equals_reference(shape, path, m, dtype, monkeypatch):
    ran = _route(path, monkeypatch)
    n, c, h, w, k, (ph, pw), groups = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    y = wg.forward(x, wt, b, (ph, pw), groups, m)
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, wg.reference_forward(x, wt, b, ph, pw, m, groups), **_tol(dtype))
    np.testing.assert_allclose(wg.forward(x, wt, None, (ph, pw), groups, m),
                               wg.reference_forward(x, wt, None, ph, pw, m, groups), **_tol(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = wg.backward(x, wt, gy, (ph, pw), groups, m)
    want = wg.reference_backward(x, wt, gy, ph, pw, m, groups)
    for name, a, r in zip(("gx", "gw", "gb"), got, want):
        assert a.dtype == dtype and a.shape == r.shape, name
        np.testing.assert_allclose(a, r, err_msg=name, **_tol(dtype, r))
    gx, gw, gb = wg.backward(x, wt, gy, (ph, pw), groups, m, need_gx=False, need_gb=False)
    assert gx is None and gb is None
    np.testing.assert_allclose(gw, want[1], **_tol(dtype, want[1]))
    gx, gw, gb = wg.backward(x, wt, gy, (ph, pw), groups, m, need_gw=False)
    assert gw is None
    np.testing.assert_allclose(gx, want[0], **_tol(dtype, want[0]))
    if path == "pieces":   # two forwards, three backwards, each on two threads
        assert ran == [2] * 5


def test_reference_backward_is_the_adjoint():
    """<gy, forward(x, w)> = <gx, x> = <gw, w>: the gradients are those of the bilinear map."""
    rng = np.random.default_rng(3)
    for m, (n, c, h, w, k, (ph, pw), groups) in itertools.product(wg.TILES, SHAPES[:4]):
        x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c // groups, 3, 3))
        y = wg.reference_forward(x, wt, None, ph, pw, m, groups)
        gy = rng.standard_normal(y.shape)
        gx, gw, _ = wg.reference_backward(x, wt, gy, ph, pw, m, groups)
        inner = (gy * y).sum()
        assert np.isclose((gx * x).sum(), inner, rtol=1e-11) and np.isclose((gw * wt).sum(), inner, rtol=1e-11)


def test_chunked_batch_equals_one_chunk(monkeypatch):
    monkeypatch.setattr(wg, "PIECES", False)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4, 9, 9)).astype(np.float32)
    wt = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    y1, g1 = wg.forward(x, wt, None, (1, 1)), wg.backward(x, wt, gy, (1, 1))
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 1)  # one sample per chunk
    y2, g2 = wg.forward(x, wt, None, (1, 1)), wg.backward(x, wt, gy, (1, 1))
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(g1, g2):  # sums over the batch in another order: float32 rounding differs
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    workspace.release()


@pytest.mark.parametrize("path,chunked", [("serial", False), ("prange", False), ("prange", True), ("pieces", False)])
@pytest.mark.parametrize("m", wg.TILES)
def test_5x5_crops_read_in_place_equal_the_stacked_copy(path, chunked, m, monkeypatch):
    """On the CPU the 5x5 path transforms the four crops straight from x (and sums their input
    gradients into gx); the stacked copy that the GPU path builds gives the same results."""
    ran = _route(path, monkeypatch)
    if chunked:
        monkeypatch.setattr(workspace, "LIMIT_BYTES", 1)  # one sample per chunk
    rng = np.random.default_rng(6)
    tf = wtr._CpuTransforms
    for n, c, h, w, k, p, groups in [(3, 4, 9, 7, 6, 2, 2), (2, 3, 6, 6, 3, 0, 1), (2, 6, 5, 8, 6, 3, 3),
                                     (1, 2, 1, 2, 2, 2, 1)]:
        x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c // groups, 5, 5))
        b = rng.standard_normal(k)
        x4, w4 = wg._as_3x3(np, x, wt, (p, p), groups)
        y = wg.forward(x, wt, b, (p, p), groups, m)
        np.testing.assert_allclose(y, wg._forward(tf, x4, w4, b, (0, 0), groups, m), rtol=1e-12, atol=1e-12)
        gy = rng.standard_normal(y.shape)
        gx, gw, gb = wg.backward(x, wt, gy, (p, p), groups, m)
        gx4, gw4, gb4 = wg._backward(tf, x4, w4, gy, (0, 0), groups, m, True, True, True)
        np.testing.assert_allclose(gx, wg._unstack_crops(np, gx4, x.shape, (p, p), groups), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, wg._unstack_weights(np, gw4), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(gb, gb4)
    workspace.release()
    if path == "pieces":   # four calls a shape: on two threads with two images or more, none with one
        assert sorted(ran) == [0] * 4 + [2] * 12


def test_pieces_only_where_the_filters_are_small_and_an_image_fits():
    tf, mib = wtr._CpuTransforms, 2 ** 20
    per = wg.PIECE_BYTES // 3
    assert wg._pieces(tf, 10, per, mib) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert wg._pieces(tf, 10, per, wg.PIECE_MAX_FILTER_BYTES + 1) is None     # U re-read by every piece
    assert wg._pieces(tf, 10, wg.PIECE_BYTES + 1, mib) is None                # one image over the bound
    assert wg._pieces(tf, 3, per, mib) is None                                # the batch is one piece
    assert wg._pieces(type("Gpu", (), {}), 10, per, mib) is None              # no one-thread transforms


def test_float32_error_is_within_the_stated_bound():
    """F(4,3) and F(2,3) in float32 within 1e-4 of the float64 result, relative to its largest value."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 64, 12, 12))
    wt = rng.standard_normal((16, 64, 3, 3)) / 24
    exact = _direct(x, wt, None, 1, 1, 1)
    for m in wg.TILES:
        y = wg.forward(x.astype(np.float32), wt.astype(np.float32), None, (1, 1), 1, m)
        assert np.abs(y - exact).max() / np.abs(exact).max() < 1e-4


def test_5x5_stacking_is_adjoint_and_a_convolution():
    """The 5x5 path: crops and sub-kernels stacked as channels give the direct 5x5 result; each unstack
    is the adjoint of its stack (<stack(x), g> = <x, unstack(g)>), which makes backward right."""
    rng = np.random.default_rng(7)
    for (n, c, h, w, k, padding, groups) in [(2, 4, 7, 8, 2, (2, 2), 2), (1, 3, 5, 6, 3, (0, 1), 1), (1, 2, 3, 3, 2, (3, 2), 1)]:
        x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c // groups, 5, 5))
        x4, w4 = wg._as_3x3(np, x, wt, padding, groups)
        oh, ow = wg.output_size(x.shape, wt.shape, padding)
        assert x4.shape == (n, 4 * c, oh + 2, ow + 2) and w4.shape == (k, 4 * c // groups, 3, 3)
        xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
        want = np.zeros((n, k, oh, ow))
        for kk, u, v in itertools.product(range(k), range(5), range(5)):
            g = kk // (k // groups)
            cg = c // groups
            want[:, kk] += np.einsum("nchw,c->nhw", xp[:, g * cg:(g + 1) * cg, u:u + oh, v:v + ow], wt[kk, :, u, v])
        np.testing.assert_allclose(_direct(x4, w4, None, 0, 0, groups), want, rtol=1e-12, atol=1e-12)
        g4 = rng.standard_normal(x4.shape)
        gx = wg._unstack_crops(np, g4, x.shape, padding, groups)
        assert np.isclose((x4 * g4).sum(), (x * gx).sum(), rtol=1e-12)
        gw4 = rng.standard_normal(w4.shape)
        assert np.isclose((w4 * gw4).sum(), (wt * wg._unstack_weights(np, gw4)).sum(), rtol=1e-12)


def test_tile_choice_and_auto_rule():
    assert wg.best_tile(32, 32) == 4 and wg.best_tile(13, 13) == 4 and wg.best_tile(2, 2) == 2
    assert wg.best_tile(3, 3) == 4 and wg.best_tile(6, 6) == 2 and wg.best_tile(7, 7) == 4
    c, h, f32 = wg.AUTO_MIN_CHANNELS, 8, np.float32
    n = -(-wg.AUTO_MIN_TILES // math.prod(wg.tiles(h, h, wg.best_tile(h, h))))   # enough tiles
    big = ((n, c, h, h), (c, c, 3, 3))
    assert wg.auto_choice((n - 1, c, h, h), (c, c, 3, 3), (1, 1), (1, 1), 1, f32) is None  # too few tiles
    assert wg.auto_choice(*big, (1, 1), (1, 1), 1, f32) == wg.best_tile(h, h)
    assert wg.auto_choice(*big, (1, 1), (1, 1), 1, np.float64) is None          # float64 stays on im2col
    assert wg.auto_choice(*big, (2, 2), (1, 1), 1, f32) is None                 # stride 2
    assert wg.auto_choice((n, c, h, h), (c - 1, c, 3, 3), (1, 1), (1, 1), 1, f32) is None  # too few outputs
    assert wg.auto_choice((n, 3, h, h), (c, 3, 3, 3), (1, 1), (1, 1), 1, f32) is None      # 3 input channels
    assert wg.auto_choice((4 * n, c, 4, 4), (c, c, 3, 3), (1, 1), (1, 1), 1, f32) == 4     # tiny outputs, many tiles
    assert wg.auto_choice((n, 2 * c, h, h), (2 * c, c, 3, 3), (1, 1), (1, 1), 2, f32) is not None  # c per group
    assert wg.auto_choice((n, 2 * c, h, h), (2 * c, c // 2, 3, 3), (1, 1), (1, 1), 4, f32) is None
    h5 = math.isqrt(wg.AUTO_5X5_MIN_PIXELS - 1) + 1                                # h5*h5 >= the minimum
    n5 = -(-wg.AUTO_MIN_TILES // math.prod(wg.tiles(h5, h5, wg.best_tile(h5, h5))))
    big5 = ((n5, c, h5, h5), (c, c, 5, 5))
    assert wg.auto_choice(*big5, (1, 1), (2, 2), 1, f32) == wg.best_tile(h5, h5)
    assert wg.auto_choice(*big5, (1, 1), (1, 1), 1, f32) is None                # 5x5: too few pixels
    assert wg.auto_choice((n5 - 1, c, h5, h5), (c, c, 5, 5), (1, 1), (2, 2), 1, f32) is None  # too few tiles
    assert wg.auto_choice((n5, 2 * c, h5, h5), (c, c, 5, 5), (1, 1), (2, 2), 2, f32) is None  # per group
    assert wg.choose("winograd", *big5, (1, 1), (2, 2), 1, f32) == wg.best_tile(h5, h5)
    assert wg.choose("auto", *big, (1, 1), (1, 1), 1, f32, gpu=True) is None
    assert wg.choose("im2col", *big, (1, 1), (1, 1), 1, f32) is None
    assert wg.choose("winograd", *big, (1, 1), (1, 1), 1, np.float64) == wg.best_tile(h, h)
    with pytest.raises(ValueError, match="stride"):
        wg.choose("winograd", *big, (2, 1), (1, 1), 1, f32)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        wg.choose("fft", *big, (1, 1), (1, 1), 1, f32)
