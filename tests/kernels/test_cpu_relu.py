"""Numba ReLU kernels against the NumPy reference (small serial and large parallel calls)."""
import numpy as np
import pytest

from minidl.kernels import cpu, reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 4, 5), (8, 16, 32, 32)])
def test_relu_kernels_match_reference(shape, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:3] = [0.0, -0.0, np.nan][: x.size]
    gy = rng.standard_normal(shape).astype(dtype)
    y, mask = cpu.relu_forward(x)
    y_ref, mask_ref = reference.relu_forward(x)
    np.testing.assert_array_equal(y, y_ref)            # NaN passes through in both
    np.testing.assert_array_equal(mask, mask_ref)
    assert y.dtype == dtype and y.shape == shape
    gx = cpu.relu_backward(mask, gy)
    np.testing.assert_array_equal(gx, reference.relu_backward(mask_ref, gy))
    assert gx.dtype == dtype


def test_relu_non_contiguous_input():
    x = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32).T   # a transposed view
    y, mask = cpu.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    gy = np.ones((6, 8), dtype=np.float32).T
    np.testing.assert_array_equal(cpu.relu_backward(mask, gy), (x > 0).astype(np.float32))
