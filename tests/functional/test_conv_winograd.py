"""conv2d(..., algorithm="winograd") against algorithm="im2col": forward and both gradients over a
grid of shapes, float64 gradient checks, the auto rule, and the errors for shapes it cannot run.

Stated tolerances: float32 results within 1e-4 of im2col's, relative to the largest magnitude of
each result (the promise of ``auto``); float64 within 1e-10 relative.
"""
import math

import numpy as np
import pytest

import minidl as md
from minidl import functional as F, nn
from minidl.gradcheck import gradcheck

# (N, C, H, W, K, padding, groups)
SHAPES = [
    (2, 3, 8, 8, 4, 1, 1),
    (1, 4, 7, 9, 6, 1, 2),
    (3, 2, 5, 6, 3, 0, 1),
    (1, 6, 11, 10, 6, 2, 3),
    (2, 16, 12, 12, 16, 1, 1),
    (1, 2, 3, 4, 2, 0, 1),
]


def _run(x, w, b, padding, groups, algorithm, gy):
    X, W, B = (md.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(X, W, B, 1, padding, groups, algorithm=algorithm)
    y.backward(gy)
    return y, [y.data, X.grad, W.grad, B.grad]


def _rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# 5x5 kernels (four 3x3 sub-kernels): padding 0 to 3 (a crop can lie wholly in the padding), groups
SHAPES_5X5 = [
    (2, 3, 8, 8, 4, 2, 1),
    (1, 4, 9, 7, 6, 1, 2),
    (2, 2, 5, 6, 3, 0, 1),
    (1, 6, 6, 6, 6, 3, 3),
    (1, 2, 1, 2, 2, 2, 1),     # smaller than the kernel: all from the padding
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ks", [(s, 3) for s in SHAPES] + [(s, 5) for s in SHAPES_5X5])
def test_winograd_equals_im2col(shape, ks, dtype):
    n, c, h, w, k, p, groups = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((k, c // groups, ks, ks)) / ks).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    gy = rng.standard_normal((n, k, h + 2 * p - ks + 1, w + 2 * p - ks + 1)).astype(dtype)
    _, got = _run(x, wt, b, p, groups, "winograd", gy)
    _, want = _run(x, wt, b, p, groups, "im2col", gy)
    bound = 1e-4 if dtype == np.float32 else 1e-10
    for name, a, r in zip(("y", "gx", "gw", "gb"), got, want):
        assert a.dtype == dtype and a.shape == r.shape, name
        assert _rel_err(a, r) < bound, f"{name}: relative error {_rel_err(a, r):.2e}"


@pytest.mark.parametrize("shape", [(2, 2, 6, 5, 3, 2, 1), (1, 4, 5, 7, 2, 1, 2)])
def test_gradcheck_5x5_float64(shape):
    n, c, h, w, k, p, groups = shape
    rng = np.random.default_rng(6)
    x, wt, b = (rng.standard_normal(s) for s in ((n, c, h, w), (k, c // groups, 5, 5), (k,)))
    assert gradcheck(lambda a, ww, bb: F.conv2d(a, ww, bb, 1, p, groups, algorithm="winograd"), x, wt, b,
                     name=f"conv2d winograd 5x5 {shape}")


def test_input_gradient_is_a_convolution_of_padded_gy_with_flipped_weights():
    """gx of a stride-1 3x3 conv with padding p = conv of gy padded by 2-p with w flipped, axes 0/1 swapped."""
    rng = np.random.default_rng(1)
    for p in (0, 1, 2):
        x, wt = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((5, 3, 3, 3))
        gy = rng.standard_normal((2, 5, 7 + 2 * p - 2, 6 + 2 * p - 2))
        X, W = md.tensor(x, requires_grad=True), md.tensor(wt, requires_grad=True)
        F.conv2d(X, W, None, 1, p, algorithm="winograd").backward(gy)
        flipped = np.ascontiguousarray(wt[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gx = F.conv2d(md.tensor(gy), md.tensor(flipped), None, 1, 2 - p, algorithm="im2col").data
        np.testing.assert_allclose(X.grad, gx, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 3, 6, 5, 2, 1, 1), (1, 4, 5, 7, 4, 0, 2), (1, 2, 4, 4, 3, 2, 1)])
def test_gradcheck_float64(shape):
    n, c, h, w, k, p, groups = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // groups, 3, 3))
    b = rng.standard_normal(k)
    assert gradcheck(lambda a, ww, bb: F.conv2d(a, ww, bb, 1, p, groups, algorithm="winograd"), x, wt, b,
                     name=f"conv2d winograd {shape}")


def _chosen(x, w, padding=1, algorithm="auto", stride=1):
    """The tile m that conv2d ran with (None: im2col), read off the graph before backward frees it."""
    X = md.tensor(x, requires_grad=True)
    y = F.conv2d(X, md.tensor(w), None, stride, padding, algorithm=algorithm)
    return y.creator.winograd


def test_auto_rule():
    from minidl.kernels import winograd as wg
    c, h = wg.AUTO_MIN_CHANNELS, 12
    n = -(-wg.AUTO_MIN_TILES // math.prod(wg.tiles(h, h, wg.best_tile(h, h))))   # enough tiles
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    assert _chosen(x, w) == wg.best_tile(h, h)                  # float32, big enough: Winograd
    assert _chosen(x.astype(np.float64), w.astype(np.float64)) is None    # float64 stays on im2col
    assert _chosen(x, w, algorithm="im2col") is None
    assert _chosen(x[:, :3], w[:, :3]) is None                  # 3 input channels: im2col is faster
    assert _chosen(x[:, :c - 1], w[:, :c - 1]) is None          # too few input channels
    assert _chosen(x, w, stride=2) is None
    assert _chosen(x[:n - 1], w) is None                        # too few tiles in the batch
    small = x[:1, :4, :8, :8]
    assert _chosen(small, w[:4, :4], algorithm="winograd") == 4
    assert _chosen(small.astype(np.float64), w[:4, :4].astype(np.float64), algorithm="winograd") == 4
    assert _chosen(small[:, :, :4, :4], w[:4, :4], padding=0, algorithm="winograd") == 2   # 2x2 output: F(2,3)


def test_errors_name_the_op_and_the_reason():
    x = np.zeros((1, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='winograd'.*kernel 7x7.*3x3 kernels, and 5x5"):
        F.conv2d(x, np.zeros((2, 2, 7, 7), np.float32), algorithm="winograd")
    with pytest.raises(ValueError, match=r"algorithm='winograd'.*stride \(2, 2\)"):
        F.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="conv2d: algorithm must be one of 'auto', 'im2col', 'winograd', got 'fft'"):
        F.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), algorithm="fft")
    with pytest.raises(ValueError, match="Conv2d: algorithm must be"):
        nn.Conv2d(2, 2, 3, algorithm="direct")


def test_module_passes_the_algorithm():
    rng = np.random.default_rng(4)
    layers = {a: nn.Conv2d(4, 6, 3, padding=1, algorithm=a) for a in ("winograd", "im2col")}
    layers["im2col"].load_state_dict(layers["winograd"].state_dict())
    assert "algorithm='winograd'" in repr(layers["winograd"]) and "algorithm" not in repr(nn.Conv2d(4, 6, 3))
    x = md.tensor(rng.standard_normal((2, 4, 9, 9)).astype(np.float32))
    ys = {a: layer(x) for a, layer in layers.items()}
    assert ys["winograd"].creator.winograd == 4 and ys["im2col"].creator.winograd is None
    assert _rel_err(ys["winograd"].data, ys["im2col"].data) < 1e-4


# ---- on a GPU (skipped without one; benchmarks/gpu_check.sh runs them) ----------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ks", [(s, 3) for s in SHAPES[:5] + [(4, 64, 28, 28, 32, 1, 1)]]
                         + [(s, 5) for s in SHAPES_5X5[:2] + [(4, 32, 27, 27, 64, 2, 1)]])
def test_gpu_winograd_equals_cpu_im2col(shape, ks, dtype, tf32):
    if tf32 and dtype == np.float64:
        pytest.skip("TF32 changes float32 products only")
    n, c, h, w, k, p, groups = shape
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((k, c // groups, ks, ks)) / ks).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    gy = rng.standard_normal((n, k, h + 2 * p - ks + 1, w + 2 * p - ks + 1)).astype(dtype)
    _, want = _run(x, wt, b, p, groups, "im2col", gy)
    md.set_tf32(tf32)
    try:
        X, W, B = (md.tensor(a, requires_grad=True, device="cuda") for a in (x, wt, b))
        y = F.conv2d(X, W, B, 1, p, groups, algorithm="winograd")
        assert y.creator.winograd in (2, 4)
        y.backward(md.tensor(gy, device="cuda"))
        got = [y.data, X.grad, W.grad, B.grad]
    finally:
        md.set_tf32(False)
    # TF32 rounds the GEMM operands to 10 mantissa bits: about 1e-3 relative (see md.set_tf32)
    bound = {np.float32: 5e-3 if tf32 else 1e-4, np.float64: 1e-10}[dtype]
    for name, a, r in zip(("y", "gx", "gw", "gb"), got, want):
        a = md.backend.as_numpy(a)
        assert a.dtype == dtype and a.shape == r.shape, name
        assert _rel_err(a, r) < bound, f"{name}: relative error {_rel_err(a, r):.2e}"


@pytest.mark.gpu
def test_gpu_winograd_gradcheck_float64():
    rng = np.random.default_rng(6)
    x, wt, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    assert gradcheck(lambda a, ww, bb: F.conv2d(a, ww, bb, 1, 1, algorithm="winograd"),
                     *(md.tensor(a, requires_grad=True, device="cuda") for a in (x, wt, b)),
                     name="conv2d winograd on the GPU")
