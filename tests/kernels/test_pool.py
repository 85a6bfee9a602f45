"""Pooling kernels (minidl/kernels/pool.py): every backend against the reference over grids of
geometries, the reference against known values (ties, padding, NaN, PyTorch's divisor), and a
max-pool backward that is a deterministic gather."""
import itertools

import numpy as np
import pytest

from minidl.kernels import get
from minidl.kernels._geometry import Window, pool_output_size, pool_window

ref = get("reference")
# (kernel, stride, padding) with padding <= kernel / 2, the only geometries the functionals allow
GEOMETRIES = [(k, s, p) for k, s, p in itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2)) if 2 * p <= k]
POOL = [  # (N, C, H, W, kh, kw, sh, sw, ph, pw, ceil_mode): rectangular, for the emulated grid
    (2, 3, 7, 7, 3, 3, 2, 2, 0, 0, False),   # AlexNet's overlapping pooling
    (1, 2, 8, 9, 3, 3, 2, 2, 1, 1, True),
    (2, 2, 6, 6, 2, 2, 2, 2, 0, 0, False),
    (1, 3, 10, 7, 5, 3, 3, 2, 2, 1, True),
    (1, 1, 5, 6, 3, 2, 1, 3, 1, 0, False),
]


def _window(h, w, k, s, p, ceil_mode):
    return pool_window("test", h, w, k, s, p, ceil_mode)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _run(k_, op, *arrays_then_params):
    *arrays, params = arrays_then_params
    out = getattr(k_.ops, op)(*[k_.put(a) if isinstance(a, np.ndarray) else a for a in arrays], params)
    return tuple(None if o is None else k_.get(o) for o in out) if isinstance(out, tuple) else k_.get(out)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_matches_reference(fast_backend, dtype, ceil_mode):
    rng = np.random.default_rng(0)
    for (k, s, p), (h, w) in itertools.product(GEOMETRIES, [(5, 7), (8, 6)]):
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        win = _window(h, w, k, s, p, ceil_mode)
        y, switches = _run(fast_backend, "max_pool_forward", x, win)
        y_ref, switches_ref = ref.max_pool_forward(x, win)
        assert y.dtype == dtype and switches.dtype == np.int32
        np.testing.assert_array_equal(y, y_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        np.testing.assert_array_equal(switches, switches_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_allclose(_run(fast_backend, "max_pool_backward", gy, switches, win),
                                   ref.max_pool_backward(gy, switches, win), **_tol(dtype))


@pytest.mark.parametrize("case", POOL)
def test_pooling_rectangular_with_a_tie(fast_backend, case, dtype):
    n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode = case
    win = Window(h, w, kh, kw, sh, sw, ph, pw, pool_output_size(h, kh, sh, ph, ceil_mode),
                 pool_output_size(w, kw, sw, pw, ceil_mode))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie: the first one wins on both sides
    y, sw_ = _run(fast_backend, "max_pool_forward", x, win)
    ry, rsw = ref.max_pool_forward(x, win)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(sw_, rsw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(_run(fast_backend, "max_pool_backward", gy, sw_, win),
                               ref.max_pool_backward(gy, rsw, win), **_tol(dtype))
    np.testing.assert_allclose(_run(fast_backend, "avg_pool_forward", x, win)[0], ref.avg_pool_forward(x, win)[0],
                               **_tol(dtype))
    np.testing.assert_allclose(_run(fast_backend, "avg_pool_backward", gy, None, win),
                               ref.avg_pool_backward(gy, None, win), **_tol(dtype))


def test_max_pool_ties_pick_the_first_and_padding_never_wins(backend):
    # all-negative input: a zero padding would beat every real value if padding were a candidate
    x = -np.ones((1, 1, 4, 4), dtype=np.float32)
    y, switches = _run(backend, "max_pool_forward", x, Window(4, 4, 3, 3, 2, 2, 1, 1, 2, 2))
    np.testing.assert_array_equal(y, -1)
    # the first element of each clipped window, as its index in the 3x3 window: windows (0, *) start
    # in the padding row -1 (so row 1 of the window), windows (*, 0) in the padding column -1
    np.testing.assert_array_equal(switches[0, 0], [[4, 3], [1, 0]])


def test_max_pool_backward_accumulates_overlapping_windows(backend):
    # AlexNet's 3x3 stride-2 windows overlap; a maximum shared by four windows collects four gradients
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    win = Window(5, 5, 3, 3, 2, 2, 0, 0, 2, 2)
    y, switches = _run(backend, "max_pool_forward", x, win)
    np.testing.assert_array_equal(switches[0, 0], [[8, 6], [2, 0]])   # (2, 2) seen from each window
    gx = _run(backend, "max_pool_backward", np.ones_like(y), switches, win)
    assert gx[0, 0, 2, 2] == 4.0 and gx.sum() == 4.0


def test_max_pool_backward_is_the_same_bit_for_bit(backend):
    # overlapping windows and many equal maxima: a scatter with atomics could add in any order
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (4, 8, 33, 31)).astype(np.float32)
    win = pool_window("test", 33, 31, 3, 2, 1, True)
    y, switches = backend.ops.max_pool_forward(backend.put(x), win)
    gy = backend.put(rng.standard_normal(y.shape).astype(np.float32))
    first = backend.get(backend.ops.max_pool_backward(gy, switches, win))
    for _ in range(3):
        np.testing.assert_array_equal(backend.get(backend.ops.max_pool_backward(gy, switches, win)), first)
    np.testing.assert_allclose(first, ref.max_pool_backward(backend.get(gy), backend.get(switches), win), rtol=1e-6)


def test_max_pool_propagates_nan(backend):
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    y, switches = _run(backend, "max_pool_forward", x, Window(4, 4, 2, 2, 2, 2, 0, 0, 2, 2))
    assert np.isnan(y[0, 0, 0, 0]) and switches[0, 0, 0, 0] == 3
    assert y[0, 0, 1, 1] == 15.0


def test_max_pool_nan_matches_reference(fast_backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 7, 7))
    x[rng.random(x.shape) < 0.1] = np.nan
    win = Window(7, 7, 3, 3, 2, 2, 1, 1, 4, 4)
    y, switches = _run(fast_backend, "max_pool_forward", x, win)
    y_ref, switches_ref = ref.max_pool_forward(x, win)
    np.testing.assert_array_equal(y, y_ref)  # NaNs compare equal in assert_array_equal
    np.testing.assert_array_equal(switches, switches_ref)


@pytest.mark.parametrize("h,w", [(9, 11), (12, 13), (4, 3), (1, 6)])
def test_max_pool_blocks_of_planes_match_reference(fast_backend, dtype, h, w):
    # 38 planes: two full blocks of the Numba forward's 16 and a short one; integer values make ties
    # common, with NaN and -inf mixed in (a -inf window must still name a real pixel, not padding).
    # The sizes give rows with and without inner columns (whose windows stay inside the row, taken in
    # one run per window offset) and edge columns on either side, including ceil mode's extra one.
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, 19, h, w)).astype(dtype)
    x[rng.random(x.shape) < 0.08] = np.nan
    x[rng.random(x.shape) < 0.15] = -np.inf
    x[0, :, :4, :4] = -np.inf   # whole windows of -inf next to the padding
    for (k, s, p), ceil_mode in itertools.product([(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2), (2, 3, 1),
                                                   (1, 1, 0)], (False, True)):
        if k > min(h, w) + 2 * p:
            continue
        win = _window(h, w, k, s, p, ceil_mode)
        y, switches = _run(fast_backend, "max_pool_forward", x, win)
        y_ref, switches_ref = ref.max_pool_forward(x, win)
        np.testing.assert_array_equal(y, y_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        np.testing.assert_array_equal(switches, switches_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool_matches_reference(fast_backend, dtype, ceil_mode):
    rng = np.random.default_rng(1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for (k, s, p), (h, w) in itertools.product(GEOMETRIES, [(5, 7), (8, 6)]):
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        win = _window(h, w, k, s, p, ceil_mode)
        y, saved = _run(fast_backend, "avg_pool_forward", x, win)
        assert y.dtype == dtype and saved is None
        np.testing.assert_allclose(y, ref.avg_pool_forward(x, win)[0], rtol=tol, atol=tol,
                                   err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_allclose(_run(fast_backend, "avg_pool_backward", gy, None, win),
                                   ref.avg_pool_backward(gy, None, win), rtol=tol, atol=tol)


def test_avg_pool_divisor_counts_padding_but_not_the_ceil_overhang(backend):
    x = np.ones((1, 1, 6, 6))
    # k=2, s=2, p=1: the corner window holds 1 input and 3 padded zeros, and divides by 4
    y, _ = _run(backend, "avg_pool_forward", x, Window(6, 6, 2, 2, 2, 2, 1, 1, 4, 4))
    assert y[0, 0, 0, 0] == 0.25 and y[0, 0, 1, 1] == 1.0
    # k=3, s=2, p=0, ceil mode: 3 outputs; the last window spans rows 4..6 of 0..5 and divides
    # by the 2x2 part inside the input (PyTorch's rule), so a constant input stays constant
    assert pool_output_size(6, 3, 2, 0, True) == 3
    y, _ = _run(backend, "avg_pool_forward", x, Window(6, 6, 3, 3, 2, 2, 0, 0, 3, 3))
    np.testing.assert_array_equal(y, 1.0)


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 5), (3, 2)), ((1, 2, 6, 6), (3, 3)), ((2, 1, 5, 9), (5, 4)),
                                       ((1, 2, 4, 4), (1, 1))])
def test_adaptive_avg_pool_matches_reference(fast_backend, dtype, shape, out):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    y, saved = _run(fast_backend, "adaptive_avg_pool_forward", x, out)
    np.testing.assert_allclose(y, ref.adaptive_avg_pool_forward(x, out)[0], **_tol(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(_run(fast_backend, "adaptive_avg_pool_backward", gy, saved, shape),
                               ref.adaptive_avg_pool_backward(gy, None, shape), **_tol(dtype))


def test_adaptive_avg_pool_reference_known_values():
    x = np.arange(5.0).reshape(1, 1, 1, 5)          # 5 -> 3 bins: [0, 2), [1, 4), [3, 5)
    y, _ = ref.adaptive_avg_pool_forward(x, (1, 3))
    np.testing.assert_array_equal(y.ravel(), [0.5, 2.0, 3.5])


def test_kernels_accept_non_contiguous_input(fast_backend):
    rng = np.random.default_rng(3)
    whole = rng.standard_normal((3, 2, 6, 7))
    x, xd = whole.transpose(1, 0, 2, 3), fast_backend.put(whole).transpose(1, 0, 2, 3)
    win = Window(6, 7, 3, 3, 2, 2, 1, 1, 3, 4)
    np.testing.assert_array_equal(fast_backend.get(fast_backend.ops.max_pool_forward(xd, win)[0]),
                                  ref.max_pool_forward(x, win)[0])
