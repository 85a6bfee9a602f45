"""The SGD update (minidl/kernels/sgd.py): every backend against the reference, the reference
against the formula written out, and the array-expression path for odd layouts."""
import numpy as np
import pytest

from minidl.kernels import get

ref = get("reference")


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("momentum,weight_decay,nesterov", [(0.0, 0.0, False), (0.0, 1e-2, False),
                                                            (0.9, 5e-4, False), (0.9, 0.0, True), (0.5, 1e-3, True)])
def test_sgd_update_matches_reference(fast_backend, momentum, weight_decay, nesterov, dtype):
    k_ = fast_backend
    rng = np.random.default_rng(7)
    p_ref = rng.standard_normal((5, 7)).astype(dtype)
    p, v, v_ref = k_.put(p_ref.copy()), None, None
    for _ in range(3):   # the first step starts the buffer, the others update it
        g = rng.standard_normal(p_ref.shape).astype(dtype)
        v = k_.ops.sgd_update(p, k_.put(g), v, 0.1, momentum, weight_decay, nesterov)
        v_ref = ref.sgd_update(p_ref, g, v_ref, 0.1, momentum, weight_decay, nesterov)
        np.testing.assert_allclose(k_.get(p), p_ref, **_tol(dtype))
        assert (v is None) == (v_ref is None) == (momentum == 0)
        if v is not None:
            assert v.dtype == dtype
            np.testing.assert_allclose(k_.get(v), v_ref, **_tol(dtype))


def test_sgd_reference_is_the_formula():
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    lr, mu, wd = 0.1, 0.9, 0.01
    v = ref.sgd_update(p, g, None, lr, mu, wd, True)
    d0 = g + wd * np.array([1.0, -2.0])
    np.testing.assert_allclose(v, d0)                                        # v starts as d
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - lr * (d0 + mu * d0))  # Nesterov: d + mu v
    q = p.copy()
    v = ref.sgd_update(p, g, v, lr, mu, wd, False)
    d1 = g + wd * q
    np.testing.assert_allclose(v, mu * d0 + d1)
    np.testing.assert_allclose(p, q - lr * (mu * d0 + d1))


def test_sgd_update_non_contiguous_takes_the_array_path(backend):
    rng = np.random.default_rng(8)
    whole = rng.standard_normal((6, 4)).astype(np.float32)
    p = backend.put(whole.copy())
    view, g = p.T, rng.standard_normal((4, 6)).astype(np.float32)
    before = whole.T.copy()
    v = backend.ops.sgd_update(view, backend.put(g), None, 0.1, 0.9, 1e-3, False)   # p.T updated in place, via p
    np.testing.assert_allclose(backend.get(v), g + np.float32(1e-3) * before, rtol=1e-6)
    np.testing.assert_allclose(backend.get(p).T, before - np.float32(0.1) * backend.get(v), rtol=1e-6)
