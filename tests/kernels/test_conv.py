"""im2col / col2im (minidl/kernels/conv.py): every backend against the reference over a grid of
geometries and dtypes, the reference against known values, and the adjoint identity."""
import itertools

import numpy as np
import pytest

from minidl.kernels import conv, get
from minidl.kernels._geometry import window

# kernels 1..11, strides 1/2/4, padding 0..3; odd and even, square and rectangular inputs
KERNELS = (1, 2, 3, 5, 7, 11)
STRIDES = (1, 2, 4)
PADDINGS = (0, 1, 2, 3)
SIZES = ((5, 7), (8, 6), (11, 13))
ref = get("reference")


def _geometries():
    for k, s, p, (h, w) in itertools.product(KERNELS, STRIDES, PADDINGS, SIZES):
        if k <= h + 2 * p and k <= w + 2 * p:
            yield k, s, p, h, w


def _tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12  # summation order differs where windows overlap


@pytest.fixture(params=["numba-serial", "numba-parallel", "emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def conv_backend(request, monkeypatch):
    """The fast backends, Numba twice (serial and parallel loops); ``.loops`` says which ran."""
    name, _, loops = request.param.partition("-")
    monkeypatch.setattr(conv, "PARALLEL_MIN_SIZE", 0 if loops == "parallel" else 1 << 62)
    k = request.getfixturevalue("make_backend")(name)
    k.loops = loops or "serial"
    return k


def test_im2col_and_col2im_match_reference(conv_backend, dtype):
    k_, loops = conv_backend, conv_backend.loops
    rng = np.random.default_rng(0)
    checked = 0
    for k, s, p, h, w in _geometries():
        if loops == "parallel" and (h, w) != SIZES[-1]:  # one size suffices: the loops are shared
            continue
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        win = window(x.shape, k, k, s, s, p, p)
        col = k_.get(k_.ops.im2col(k_.put(x), win))
        col_ref = ref.im2col(x, win)
        assert col.dtype == dtype and col.shape == col_ref.shape
        np.testing.assert_array_equal(col, col_ref, err_msg=f"im2col k={k} s={s} p={p} size={h}x{w}")
        g = rng.standard_normal(col.shape).astype(dtype)
        gx = k_.get(k_.ops.col2im(k_.put(g), x.shape, win))
        assert gx.dtype == dtype and gx.shape == x.shape
        np.testing.assert_allclose(gx, ref.col2im(g, x.shape, win), rtol=_tol(dtype), atol=_tol(dtype),
                                   err_msg=f"col2im k={k} s={s} p={p} size={h}x{w}")
        checked += 1
    assert checked > (150 if loops == "serial" else 60)


def test_rectangular_kernel_stride_padding(conv_backend):
    k_ = conv_backend
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 9, 12))
    for geometry in [(3, 5, 1, 2, 0, 2), (1, 4, 2, 1, 3, 0), (11, 2, 4, 3, 1, 1), (2, 3, 3, 4, 2, 1)]:
        win = window(x.shape, *geometry)
        col = k_.get(k_.ops.im2col(k_.put(x), win))
        np.testing.assert_array_equal(col, ref.im2col(x, win), err_msg=str(geometry))
        g = rng.standard_normal(col.shape)
        np.testing.assert_allclose(k_.get(k_.ops.col2im(k_.put(g), x.shape, win)), ref.col2im(g, x.shape, win),
                                   rtol=1e-12, atol=1e-12, err_msg=str(geometry))


def test_col2im_is_the_adjoint_of_im2col(backend):
    # <im2col(x), g> == <x, col2im(g)>: the identity that makes col2im the right backward
    rng = np.random.default_rng(2)
    for k, s, p in [(3, 1, 1), (5, 2, 2), (7, 4, 3), (2, 1, 0)]:
        x = rng.standard_normal((2, 3, 9, 10))
        win = window(x.shape, k, k, s, s, p, p)
        col = backend.get(backend.ops.im2col(backend.put(x), win))
        g = rng.standard_normal(col.shape)
        gx = backend.get(backend.ops.col2im(backend.put(g), x.shape, win))
        assert np.isclose((col * g).sum(), (x * gx).sum(), rtol=1e-12)


def test_known_values_with_padding(backend):
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)  # [[1, 2], [3, 4]]
    win = window(x.shape, 2, 2, 1, 1, 1, 1)                     # 3x3 output positions
    col = backend.get(backend.ops.im2col(backend.put(x), win))
    # row (i=0, j=0) sees the top-left of each window: zero padding except where the input starts
    np.testing.assert_array_equal(col[0], [0, 0, 0, 0, 1, 2, 0, 3, 4])
    np.testing.assert_array_equal(col[3], [1, 2, 0, 3, 4, 0, 0, 0, 0])
    # every input pixel lies in 4 windows: col2im of all-ones counts them
    ones = backend.put(np.ones_like(col))
    np.testing.assert_array_equal(backend.get(backend.ops.col2im(ones, x.shape, win)), np.full((1, 1, 2, 2), 4))


CONV = [  # (N, C, H, W, kh, kw, sh, sw, ph, pw), small enough for the emulated grid to wrap many times
    (2, 3, 7, 6, 3, 3, 1, 1, 1, 1),
    (1, 2, 11, 13, 5, 3, 2, 3, 2, 1),
    (2, 1, 9, 9, 4, 4, 4, 4, 0, 0),
    (1, 3, 12, 10, 11, 5, 4, 2, 2, 0),   # AlexNet-like 11-wide kernel, stride 4
    (3, 2, 5, 5, 1, 1, 1, 1, 0, 0),
    (1, 1, 6, 7, 2, 3, 3, 1, 1, 1),      # stride larger than kernel: pixels no window covers
]


@pytest.mark.parametrize("case", CONV)
def test_col2im_writes_every_element_of_out(fast_backend, case, dtype):
    k_ = fast_backend
    n, c, h, w, *geometry = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    win = window(x.shape, *geometry)
    g = rng.standard_normal(ref.im2col(x, win).shape).astype(dtype)
    out = k_.put(np.full(x.shape, np.nan, dtype=dtype))  # every element written, into the given buffer
    assert k_.ops.col2im(k_.put(g), x.shape, win, out=out) is out
    np.testing.assert_allclose(k_.get(out), ref.col2im(g, x.shape, win), rtol=_tol(dtype), atol=_tol(dtype))


def test_non_contiguous_input_and_out_buffers(conv_backend):
    k_ = conv_backend
    rng = np.random.default_rng(3)
    whole = rng.standard_normal((3, 4, 7, 8)).astype(np.float32)
    x, xd = whole[:, ::2], k_.put(whole)[:, ::2]  # strided views
    win = window(x.shape, 3, 3, 2, 1, 1, 2)
    expected = ref.im2col(x, win)
    out = k_.put(np.full(expected.shape, np.nan, dtype=np.float32))
    assert k_.ops.im2col(xd, win, out=out) is out
    np.testing.assert_array_equal(k_.get(out), expected)
    gx = k_.put(np.full(x.shape, np.nan, dtype=np.float32))  # col2im must overwrite, not accumulate into, out
    assert k_.ops.col2im(k_.put(expected), x.shape, win, out=gx) is gx
    np.testing.assert_allclose(k_.get(gx), ref.col2im(expected, x.shape, win), rtol=1e-6, atol=1e-6)


def test_bad_out_and_col_shapes_raise(backend):
    x = backend.put(np.zeros((1, 2, 5, 5), dtype=np.float32))
    win = window(x.shape, 3, 3, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"im2col: out must be .*float32.*\(18, 25\)"):
        backend.ops.im2col(x, win, out=backend.put(np.empty((18, 24), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"im2col: out must be"):
        backend.ops.im2col(x, win, out=backend.put(np.empty((18, 25), dtype=np.float64)))
    with pytest.raises(ValueError, match=r"col2im: col has shape \(18, 24\), expected \(18, 25\)"):
        backend.ops.col2im(backend.put(np.zeros((18, 24), dtype=np.float32)), x.shape, win)


def test_unsupported_dtype_is_named(cuda_backend):
    k_ = cuda_backend
    with pytest.raises(TypeError, match="float32 and float64.*int64"):
        k_.ops.im2col(k_.put(np.ones((1, 1, 3, 3), dtype=np.int64)), window((1, 1, 3, 3), 2, 2, 1, 1, 0, 0))
