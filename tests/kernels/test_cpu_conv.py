"""Numba im2col/col2im against the plain NumPy references, over a grid of geometries and dtypes."""
import itertools

import numpy as np
import pytest

from minidl.kernels import cpu, reference as ref

# kernels 1..11, strides 1/2/4, padding 0..3; odd and even, square and rectangular inputs
KERNELS = (1, 2, 3, 5, 7, 11)
STRIDES = (1, 2, 4)
PADDINGS = (0, 1, 2, 3)
SIZES = ((5, 7), (8, 6), (11, 13))


def _geometries():
    for k, s, p, (h, w) in itertools.product(KERNELS, STRIDES, PADDINGS, SIZES):
        if k <= h + 2 * p and k <= w + 2 * p:
            yield k, s, p, h, w


@pytest.fixture(params=["serial", "parallel"])
def loops(request, monkeypatch):
    """Run the test once with the serial and once with the parallel (prange) kernels."""
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0 if request.param == "parallel" else 1 << 62)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_and_col2im_match_reference(dtype, loops):
    rng = np.random.default_rng(0)
    checked = 0
    for k, s, p, h, w in _geometries():
        if loops == "parallel" and (h, w) != SIZES[-1]:  # one size suffices: the loops are shared
            continue
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        geometry = (k, k, s, s, p, p)
        col = cpu.im2col(x, *geometry)
        col_ref = ref.im2col(x, *geometry)
        assert col.dtype == dtype and col.shape == col_ref.shape
        np.testing.assert_array_equal(col, col_ref, err_msg=f"im2col k={k} s={s} p={p} size={h}x{w}")
        g = rng.standard_normal(col.shape).astype(dtype)
        gx = cpu.col2im(g, x.shape, *geometry)
        gx_ref = ref.col2im(g, x.shape, *geometry)
        assert gx.dtype == dtype and gx.shape == x.shape
        tol = 1e-5 if dtype == np.float32 else 1e-12  # summation order differs where windows overlap
        np.testing.assert_allclose(gx, gx_ref, rtol=tol, atol=tol, err_msg=f"col2im k={k} s={s} p={p} size={h}x{w}")
        checked += 1
    assert checked > (150 if loops == "serial" else 60)


def test_rectangular_kernel_stride_padding(loops):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 9, 12))
    for geometry in [(3, 5, 1, 2, 0, 2), (1, 4, 2, 1, 3, 0), (11, 2, 4, 3, 1, 1), (2, 3, 3, 4, 2, 1)]:
        col = cpu.im2col(x, *geometry)
        np.testing.assert_array_equal(col, ref.im2col(x, *geometry), err_msg=str(geometry))
        g = rng.standard_normal(col.shape)
        np.testing.assert_allclose(cpu.col2im(g, x.shape, *geometry), ref.col2im(g, x.shape, *geometry),
                                   rtol=1e-12, atol=1e-12, err_msg=str(geometry))


def test_col2im_is_the_adjoint_of_im2col(loops):
    # <im2col(x), g> == <x, col2im(g)>: the identity that makes col2im the right backward
    rng = np.random.default_rng(2)
    for k, s, p in [(3, 1, 1), (5, 2, 2), (7, 4, 3), (2, 1, 0)]:
        x = rng.standard_normal((2, 3, 9, 10))
        col = cpu.im2col(x, k, k, s, s, p, p)
        g = rng.standard_normal(col.shape)
        assert np.isclose((col * g).sum(), (x * cpu.col2im(g, x.shape, k, k, s, s, p, p)).sum(), rtol=1e-12)


def test_known_values_with_padding():
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)  # [[1, 2], [3, 4]]
    col = cpu.im2col(x, 2, 2, 1, 1, 1, 1)                       # 3x3 output positions
    # row (i=0, j=0) sees the top-left of each window: zero padding except where the input starts
    np.testing.assert_array_equal(col[0], [0, 0, 0, 0, 1, 2, 0, 3, 4])
    np.testing.assert_array_equal(col[3], [1, 2, 0, 3, 4, 0, 0, 0, 0])
    # every input pixel lies in 4 windows: col2im of all-ones counts them
    np.testing.assert_array_equal(cpu.col2im(np.ones_like(col), x.shape, 2, 2, 1, 1, 1, 1), np.full((1, 1, 2, 2), 4))


def test_non_contiguous_input_and_out_buffers(loops):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 7, 8)).astype(np.float32)[:, ::2]  # a strided view
    geometry = (3, 3, 2, 1, 1, 2)
    expected = ref.im2col(x, *geometry)
    out = np.full(expected.shape, np.nan, dtype=np.float32)
    assert cpu.im2col(x, *geometry, out=out) is out
    np.testing.assert_array_equal(out, expected)
    gx = np.full(x.shape, np.nan, dtype=np.float32)  # col2im must overwrite, not accumulate into, out
    assert cpu.col2im(expected, x.shape, *geometry, out=gx) is gx
    np.testing.assert_allclose(gx, ref.col2im(expected, x.shape, *geometry), rtol=1e-6, atol=1e-6)


def test_bad_out_and_col_shapes_raise():
    x = np.zeros((1, 2, 5, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"im2col: out must be .*float32.*\(18, 25\)"):
        cpu.im2col(x, 3, 3, 1, 1, 1, 1, out=np.empty((18, 24), dtype=np.float32))
    with pytest.raises(ValueError, match=r"im2col: out must be"):
        cpu.im2col(x, 3, 3, 1, 1, 1, 1, out=np.empty((18, 25), dtype=np.float64))
    with pytest.raises(ValueError, match=r"col2im: col has shape \(18, 24\), expected \(18, 25\)"):
        cpu.col2im(np.zeros((18, 24), dtype=np.float32), x.shape, 3, 3, 1, 1, 1, 1)
