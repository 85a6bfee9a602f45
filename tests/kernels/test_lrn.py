"""Local response normalisation kernels (minidl/kernels/lrn.py): every backend against the
reference, and the reference's channel window (PyTorch's, also for an even size)."""
import itertools

import numpy as np
import pytest

from minidl.kernels import get
from minidl.kernels.lrn import LRNParams

ref = get("reference")


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _forward_backward(k_, x, gy, params):
    y, saved = k_.ops.lrn_forward(k_.put(x), params)
    gx = k_.ops.lrn_backward(k_.put(gy), saved, params)
    return k_.get(y), k_.get(saved[2]).reshape(x.shape), k_.get(gx)


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_matches_reference(fast_backend, dtype, beta):
    rng = np.random.default_rng(2)
    for size, channels in itertools.product((1, 2, 3, 4, 5, 9), (1, 3, 6, 10)):
        x = rng.standard_normal((2, channels, 3, 4)).astype(dtype)
        gy = rng.standard_normal(x.shape).astype(dtype)
        params = LRNParams(size, 0.3, beta, 1.5)
        y, scale, gx = _forward_backward(fast_backend, x, gy, params)
        y_ref, scale_ref, gx_ref = _forward_backward(_Ref, x, gy, params)
        assert y.dtype == dtype and scale.dtype == dtype and gx.dtype == dtype
        msg = f"size={size} C={channels}"
        np.testing.assert_allclose(scale, scale_ref, err_msg=msg, **_tol(dtype))
        np.testing.assert_allclose(y, y_ref, err_msg=msg, **_tol(dtype))
        np.testing.assert_allclose(gx, gx_ref, err_msg=msg, **_tol(dtype))


class _Ref:
    ops, put, get = ref, staticmethod(np.asarray), staticmethod(np.asarray)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-2, 0.75, 2.0), (4, 3e-2, 0.6, 1.0), (1, 0.1, 0.75, 1.5),
                                               (3, 0.5, 1.0, 0.5)])
def test_lrn_constants(fast_backend, size, alpha, beta, k, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 3, 4)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    params = LRNParams(size, alpha, beta, k)
    for got, want in zip(_forward_backward(fast_backend, x, gy, params), _forward_backward(_Ref, x, gy, params)):
        np.testing.assert_allclose(got, want, **_tol(dtype))


def test_lrn_window_for_even_size_is_pytorchs(backend):
    # size 2: channel c sees c-1 and c (not c+1), as PyTorch's zero-padded channel window
    for hot, expected in ((2, [1.0, 1.0, 2.0]), (0, [2.0, 2.0, 1.0])):
        x = np.zeros((1, 3, 1, 1))
        x[0, hot] = 1.0
        _, saved = backend.ops.lrn_forward(backend.put(x), LRNParams(2, 1.0, 0.75, 1.0))
        np.testing.assert_array_equal(backend.get(saved[2]).ravel(), expected)


def test_lrn_reference_against_the_formula():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 2, 2))
    y, _ = ref.lrn_forward(x, LRNParams(3, 0.2, 0.75, 2.0))
    for c in range(4):
        s = 2.0 + 0.2 * sum(x[:, j] ** 2 for j in range(max(c - 1, 0), min(c + 1, 3) + 1))
        np.testing.assert_allclose(y[:, c], x[:, c] / s ** 0.75, rtol=1e-14)


def test_lrn_accepts_non_contiguous_input(fast_backend):
    whole = np.random.default_rng(3).standard_normal((3, 2, 6, 7))
    x, xd = whole.transpose(1, 0, 2, 3), fast_backend.put(whole).transpose(1, 0, 2, 3)
    params = LRNParams(5, 1e-1, 0.75, 2.0)
    np.testing.assert_allclose(fast_backend.get(fast_backend.ops.lrn_forward(xd, params)[0]),
                               ref.lrn_forward(x, params)[0], rtol=1e-12)
