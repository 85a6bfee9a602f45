"""Batch-norm kernels (minidl/kernels/batchnorm.py): every backend against the reference (values,
running buffers, gradients), the reference against the formula, and repeatable GPU sums."""
import numpy as np
import pytest

from minidl.kernels import get
from minidl.kernels.batchnorm import BNParams

ref = get("reference")
BN = [(3, 5, 7), (4, 3, 1), (2, 4, 20), (1, 2, 30)]   # (N, C, L): L = 1 is BatchNorm1d's (N, C)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", BN)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_reference(fast_backend, shape, training, affine, dtype):
    k_ = fast_backend
    n, c, l = shape
    rng = np.random.default_rng(9)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)   # an offset mean: the shifted sums must not cancel
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    rm0, rv0 = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm, rv, rm_ref, rv_ref = k_.put(rm0.copy()), k_.put(rv0.copy()), rm0.copy(), rv0.copy()
    put = (lambda a: None if a is None else k_.put(a))
    params = BNParams(training, 0.1, 1e-5)
    y, saved = k_.ops.batch_norm_forward(k_.put(x), put(w), put(b), rm, rv, params)
    y_ref, saved_ref = ref.batch_norm_forward(x, w, b, rm_ref, rv_ref, params)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(k_.get(y), y_ref, **_tol(dtype))
    np.testing.assert_allclose(k_.get(rm), rm_ref, **_tol(dtype))
    np.testing.assert_allclose(k_.get(rv), rv_ref, **_tol(dtype))
    gy = rng.standard_normal(shape).astype(dtype)
    for need_gb in (True, False):
        got = k_.ops.batch_norm_backward(k_.put(gy), saved, need_gb)
        want = ref.batch_norm_backward(gy, saved_ref, need_gb)
        for name, a, r in zip(("gx", "gw", "gb"), got, want):
            assert (a is None) == (r is None), name
            if a is not None:
                assert a.dtype == dtype, name
                np.testing.assert_allclose(k_.get(a), r, err_msg=name, **_tol(dtype))


def test_batch_norm_without_buffers_and_with_float64_buffers(fast_backend):
    k_ = fast_backend
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    params = BNParams(True, 0.1, 1e-5)
    y, _ = k_.ops.batch_norm_forward(k_.put(x), None, None, None, None, params)
    np.testing.assert_allclose(k_.get(y), ref.batch_norm_forward(x, None, None, None, None, params)[0],
                               **_tol(np.float32))
    rm, rv = np.zeros(3), np.ones(3)               # float64 buffers, float32 input
    rm_ref, rv_ref = rm.copy(), rv.copy()
    rm, rv = k_.put(rm), k_.put(rv)
    k_.ops.batch_norm_forward(k_.put(x), None, None, rm, rv, params)
    ref.batch_norm_forward(x, None, None, rm_ref, rv_ref, params)
    np.testing.assert_allclose(k_.get(rm), rm_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(k_.get(rv), rv_ref, rtol=1e-5, atol=1e-7)


def test_batch_norm_reference_is_the_formula():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 2, 3))
    rm, rv = np.zeros(2), np.ones(2)
    y, _ = ref.batch_norm_forward(x, np.array([2.0, 3.0]), np.array([1.0, -1.0]), rm, rv, BNParams(True, 0.5, 0.0))
    for c, (w, b) in enumerate([(2.0, 1.0), (3.0, -1.0)]):
        v = x[:, c].ravel()
        np.testing.assert_allclose(y[:, c], (x[:, c] - v.mean()) / v.std() * w + b, rtol=1e-12)
        assert np.isclose(rm[c], 0.5 * v.mean()) and np.isclose(rv[c], 0.5 + 0.5 * v.var(ddof=1))


def test_batch_norm_backward_is_the_same_bit_for_bit(backend):
    rng = np.random.default_rng(12)
    x = backend.put(rng.standard_normal((16, 8, 300)).astype(np.float32))
    gy = backend.put(rng.standard_normal((16, 8, 300)).astype(np.float32))
    w = backend.put(rng.standard_normal(8).astype(np.float32))
    _, saved = backend.ops.batch_norm_forward(x, w, None, None, None, BNParams(True, 0.1, 1e-5))
    first = [backend.get(a) for a in backend.ops.batch_norm_backward(gy, saved)]
    for _ in range(2):
        for a, b in zip(backend.ops.batch_norm_backward(gy, saved), first):
            np.testing.assert_array_equal(backend.get(a), b)
