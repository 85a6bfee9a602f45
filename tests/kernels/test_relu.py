"""ReLU kernels (minidl/kernels/relu.py): every backend against the reference; the GPU's bit mask."""
import numpy as np
import pytest

from minidl.kernels import get

ref = get("reference")


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4, 5), (8, 16, 32, 32), (3, 4, 5), (2, 8), (7,), (1, 3, 3, 3)])
def test_relu_kernels_match_reference(fast_backend, shape, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:3] = [0.0, -0.0, np.nan][: x.size]
    x.reshape(-1)[-1] = np.nan
    gy = rng.standard_normal(shape).astype(dtype)
    y, saved = fast_backend.ops.relu_forward(fast_backend.put(x))
    y_ref, mask_ref = ref.relu_forward(x)
    np.testing.assert_array_equal(fast_backend.get(y), y_ref)            # NaN passes through in both
    assert y.dtype == dtype and y.shape == shape
    gx = fast_backend.get(fast_backend.ops.relu_backward(fast_backend.put(gy), saved))
    np.testing.assert_array_equal(gx, ref.relu_backward(gy, mask_ref))
    assert gx.dtype == dtype and gx.shape == shape
    saved = fast_backend.get(saved)
    if fast_backend.name == "numba":
        np.testing.assert_array_equal(saved, mask_ref)
    else:   # the CUDA bit mask: bit j of byte q is element q + j * Q
        q = saved.size
        assert saved.dtype == np.uint8 and q == (x.size + 7) // 8
        np.testing.assert_array_equal(np.unpackbits(saved, bitorder="little").reshape(q, 8).T.ravel()[:x.size],
                                      mask_ref.ravel())


def test_relu_reference_known_values():
    y, mask = ref.relu_forward(np.array([-1.0, 0.0, 2.0, np.nan]))
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.0, np.nan])
    np.testing.assert_array_equal(ref.relu_backward(np.ones(4), mask), [0.0, 0.0, 1.0, 0.0])


def test_relu_non_contiguous_input(backend):
    x = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    y, saved = backend.ops.relu_forward(backend.put(x).T)   # a transposed view
    np.testing.assert_array_equal(backend.get(y), np.maximum(x.T, 0))
    gy = backend.put(np.ones((6, 8), dtype=np.float32)).T
    np.testing.assert_array_equal(backend.get(backend.ops.relu_backward(gy, saved)), (x.T > 0).astype(np.float32))
