"""Numba pooling and LRN kernels against the plain NumPy references, over grids of geometries."""
import itertools

import numpy as np
import pytest

from minidl.functional.pool import pool_output_size
from minidl.kernels import cpu, reference as ref

# (kernel, stride, padding) with padding <= kernel / 2, the only geometries the functionals allow
GEOMETRIES = [(k, s, p) for k, s, p in itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2)) if 2 * p <= k]


def _geometry(h, w, k, s, p, ceil_mode):
    return k, k, s, s, p, p, pool_output_size(h, k, s, p, ceil_mode), pool_output_size(w, k, s, p, ceil_mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_matches_reference(dtype, ceil_mode):
    rng = np.random.default_rng(0)
    for (k, s, p), (h, w) in itertools.product(GEOMETRIES, [(5, 7), (8, 6)]):
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        g = _geometry(h, w, k, s, p, ceil_mode)
        y, argmax = cpu.max_pool_forward(x, *g)
        y_ref, argmax_ref = ref.max_pool_forward(x, *g)
        assert y.dtype == dtype and argmax.dtype == np.int32
        np.testing.assert_array_equal(y, y_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        np.testing.assert_array_equal(argmax, argmax_ref, err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_allclose(cpu.max_pool_backward(gy, argmax, x.shape),
                                   ref.max_pool_backward(gy, argmax, x.shape), rtol=1e-6, atol=1e-6)


def test_max_pool_ties_pick_the_first_and_padding_never_wins():
    # all-negative input: a zero padding would beat every real value if padding were a candidate
    x = -np.ones((1, 1, 4, 4), dtype=np.float32)
    y, argmax = cpu.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 2, 2)
    np.testing.assert_array_equal(y, -1)
    np.testing.assert_array_equal(argmax[0, 0], [[0, 1], [4, 5]])  # first element of each clipped window
    np.testing.assert_array_equal(argmax, ref.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 2, 2)[1])


def test_max_pool_backward_accumulates_overlapping_windows():
    # AlexNet's 3x3 stride-2 windows overlap; a maximum shared by four windows collects four gradients
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    y, argmax = cpu.max_pool_forward(x, 3, 3, 2, 2, 0, 0, 2, 2)
    np.testing.assert_array_equal(argmax, 12)
    gx = cpu.max_pool_backward(np.ones_like(y), argmax, x.shape)
    assert gx[0, 0, 2, 2] == 4.0 and gx.sum() == 4.0


def test_max_pool_propagates_nan():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    y, argmax = cpu.max_pool_forward(x, 2, 2, 2, 2, 0, 0, 2, 2)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 5
    assert y[0, 0, 1, 1] == 15.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool_matches_reference(dtype, ceil_mode):
    rng = np.random.default_rng(1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for (k, s, p), (h, w) in itertools.product(GEOMETRIES, [(5, 7), (8, 6)]):
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        g = _geometry(h, w, k, s, p, ceil_mode)
        y = cpu.avg_pool_forward(x, *g)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref.avg_pool_forward(x, *g), rtol=tol, atol=tol,
                                   err_msg=f"k={k} s={s} p={p} ceil={ceil_mode}")
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_allclose(cpu.avg_pool_backward(gy, x.shape, *g[:6]),
                                   ref.avg_pool_backward(gy, x.shape, *g[:6]), rtol=tol, atol=tol)


def test_avg_pool_divisor_counts_padding_but_not_the_ceil_overhang():
    x = np.ones((1, 1, 6, 6))
    # k=2, s=2, p=1: the corner window holds 1 input and 3 padded zeros, and divides by 4
    y = cpu.avg_pool_forward(x, 2, 2, 2, 2, 1, 1, 4, 4)
    assert y[0, 0, 0, 0] == 0.25 and y[0, 0, 1, 1] == 1.0
    # k=3, s=2, p=0, ceil mode: 3 outputs; the last window spans rows 4..6 of 0..5 and divides
    # by the 2x2 part inside the input (PyTorch's rule), so a constant input stays constant
    assert pool_output_size(6, 3, 2, 0, True) == 3
    y = cpu.avg_pool_forward(x, 3, 3, 2, 2, 0, 0, 3, 3)
    np.testing.assert_array_equal(y, 1.0)
    np.testing.assert_array_equal(y, ref.avg_pool_forward(x, 3, 3, 2, 2, 0, 0, 3, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_matches_reference(dtype, beta):
    rng = np.random.default_rng(2)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for size, channels in itertools.product((1, 2, 3, 4, 5, 9), (1, 3, 6, 10)):
        x = rng.standard_normal((2, channels, 3, 4)).astype(dtype)
        y, scale = cpu.lrn_forward(x, size, 0.3, beta, 1.5)
        y_ref, scale_ref = ref.lrn_forward(x, size, 0.3, beta, 1.5)
        assert y.dtype == dtype and scale.dtype == dtype
        np.testing.assert_allclose(scale, scale_ref, rtol=tol, atol=tol, err_msg=f"size={size} C={channels}")
        np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol, err_msg=f"size={size} C={channels}")
        gy = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_allclose(cpu.lrn_backward(x, y, scale, gy, size, 0.3, beta, 1.5),
                                   ref.lrn_backward(x, y, scale, gy, size, 0.3, beta, 1.5),
                                   rtol=tol, atol=tol, err_msg=f"size={size} C={channels}")


def test_lrn_window_for_even_size_is_pytorchs():
    # size 2: channel c sees c-1 and c (not c+1), as PyTorch's zero-padded channel window
    x = np.zeros((1, 3, 1, 1))
    x[0, 2] = 1.0
    _, scale = cpu.lrn_forward(x, 2, 1.0, 0.75, 1.0)
    np.testing.assert_array_equal(scale.ravel(), [1.0, 1.0, 2.0])
    x = np.zeros((1, 3, 1, 1))
    x[0, 0] = 1.0
    _, scale = cpu.lrn_forward(x, 2, 1.0, 0.75, 1.0)
    np.testing.assert_array_equal(scale.ravel(), [2.0, 2.0, 1.0])


def test_kernels_accept_non_contiguous_input():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 6, 7)).transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(cpu.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 3, 4)[0],
                                  ref.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 3, 4)[0])
    np.testing.assert_allclose(cpu.lrn_forward(x, 5, 1e-1, 0.75, 2.0)[0], ref.lrn_forward(x, 5, 1e-1, 0.75, 2.0)[0])


def test_max_pool_nan_matches_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 7, 7))
    x[rng.random(x.shape) < 0.1] = np.nan
    y, argmax = cpu.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 4, 4)
    y_ref, argmax_ref = ref.max_pool_forward(x, 3, 3, 2, 2, 1, 1, 4, 4)
    np.testing.assert_array_equal(y, y_ref)  # NaNs compare equal in assert_array_equal
    np.testing.assert_array_equal(argmax, argmax_ref)
