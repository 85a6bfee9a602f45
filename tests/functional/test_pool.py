"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: gradient checks over grids, PyTorch comparisons, errors."""
import itertools

import numpy as np
import pytest

import minidl as md
from minidl import functional as F

# kernels 1/2/3/5, strides 1/2/3, padding 0/1/2 where PyTorch allows it (padding <= kernel / 2)
GRID = [(k, s, p, c) for k, s, p, c in itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (False, True))
        if 2 * p <= k]
POOLS = {"max": F.max_pool2d, "avg": F.avg_pool2d}


def _x(shape, seed=0, dtype=np.float64):
    # distinct values keep max-pool's argmax away from ties that central differences would straddle
    rng = np.random.default_rng(seed)
    x = rng.permutation(np.arange(np.prod(shape))).reshape(shape) / 7 + rng.uniform(-0.01, 0.01, shape)
    return x.astype(dtype)


@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("k,s,p,ceil_mode", GRID)
def test_gradcheck(op, k, s, p, ceil_mode, device):
    x = md.tensor(_x((1, 2, 5, 6), seed=k * 100 + s * 10 + p), requires_grad=True, device=device)
    md.gradcheck(lambda x: POOLS[op](x, k, s, p, ceil_mode), x)


@pytest.mark.parametrize("op", sorted(POOLS))
def test_gradcheck_rectangular_kernel_stride_padding(op, device):
    # AlexNet-like overlapping windows, and pairs that differ per axis
    x = md.tensor(_x((2, 1, 7, 6), seed=5), requires_grad=True, device=device)
    md.gradcheck(lambda x: POOLS[op](x, (3, 2), (2, 1), (1, 0), True), x)
    md.gradcheck(lambda x: POOLS[op](x, 3, 2), x)


@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_stride_defaults_to_kernel_and_float32_stays_float32(op, ceil_mode):
    x = md.tensor(_x((2, 3, 7, 9), dtype=np.float32))
    y = POOLS[op](x, 2, ceil_mode=ceil_mode)
    assert y.dtype == np.float32
    assert y.shape == ((2, 3, 4, 5) if ceil_mode else (2, 3, 3, 4))


def test_max_pool_alexnet_shapes():
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 2, 55, 55)).astype(np.float32))
    assert F.max_pool2d(x, 3, 2).shape == (1, 2, 27, 27)                  # AlexNet pool1
    assert F.max_pool2d(x, 3, 2, ceil_mode=True).shape == (1, 2, 27, 27)
    x = md.tensor(np.zeros((1, 1, 112, 112), dtype=np.float32))
    assert F.max_pool2d(x, 3, 2, ceil_mode=True).shape == (1, 1, 56, 56)  # GoogLeNet's pool after conv1


@pytest.mark.parametrize("out", [1, 2, 3, (2, 3), (4, 5), (None, 2), 7])
def test_adaptive_avg_pool_gradcheck(out, device):
    x = md.tensor(_x((2, 2, 6, 5), seed=3), requires_grad=True, device=device)
    md.gradcheck(lambda x: F.adaptive_avg_pool2d(x, out), x)


def test_adaptive_avg_pool_one_is_global_mean():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    y = F.adaptive_avg_pool2d(md.tensor(x), 1)
    assert y.shape == (2, 3, 1, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


# ---- against PyTorch ----------------------------------------------------------------------------------

def _rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


def _compare_with_torch(ours, theirs, x_np):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    x = md.tensor(x_np, requires_grad=True)
    y = ours(x)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    xt = torch.tensor(x_np, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(gy))
    assert y.shape == tuple(yt.shape)
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert _rel_err(y.numpy(), yt.detach().numpy()) <= 1e-4
    assert _rel_err(x.grad, xt.grad.numpy()) <= 1e-4


@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("k,s,p,ceil_mode", GRID)
def test_matches_torch(op, k, s, p, ceil_mode):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    theirs = {"max": torch.nn.functional.max_pool2d, "avg": torch.nn.functional.avg_pool2d}[op]
    x = np.random.default_rng(k + s + p).standard_normal((2, 3, 9, 8)).astype(np.float32)
    _compare_with_torch(lambda t: POOLS[op](t, k, s, p, ceil_mode),
                        lambda t: theirs(t, k, s, p, ceil_mode=ceil_mode), x)


@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("k,s,p,ceil_mode", [(7, 4, 3, True), (11, 4, 5, False), (7, 2, 3, True), (11, 4, 0, True),
                                             (4, 4, 2, True), (3, 3, 1, True)])
def test_matches_torch_large_kernels(op, k, s, p, ceil_mode):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    theirs = {"max": torch.nn.functional.max_pool2d, "avg": torch.nn.functional.avg_pool2d}[op]
    x = np.random.default_rng(k * s).standard_normal((2, 2, 27, 25)).astype(np.float32)
    _compare_with_torch(lambda t: POOLS[op](t, k, s, p, ceil_mode),
                        lambda t: theirs(t, k, s, p, ceil_mode=ceil_mode), x)


def test_max_pool_switches_match_torch_indices():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    x = np.random.default_rng(0).standard_normal((2, 3, 11, 10)).astype(np.float32)
    from minidl import kernels
    from minidl.kernels._geometry import Window
    _, switches = kernels.of(x).max_pool_forward(x, Window(11, 10, 3, 3, 2, 2, 1, 1, 6, 6))
    # a switch is the maximum's place in its 3x3 window; torch gives its place in the 11x10 plane
    i, j = np.arange(6)[:, None], np.arange(6)[None, :]
    h, w = i * 2 - 1 + switches // 3, j * 2 - 1 + switches % 3
    _, idx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(h * 10 + w, idx.numpy())
    assert switches.min() >= 0 and switches.max() < 9


@pytest.mark.parametrize("out", [1, 2, 3, (3, 4), (5, 2), 7])
def test_adaptive_avg_pool_matches_torch(out):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 8)).astype(np.float32)
    _compare_with_torch(lambda t: F.adaptive_avg_pool2d(t, out),
                        lambda t: torch.nn.functional.adaptive_avg_pool2d(t, out), x)


# ---- invalid arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("shape,kwargs,match", [
    ((2, 3, 4), dict(kernel_size=2), r"expected a 4-D input .*\(2, 3, 4\)"),
    ((1, 1, 4, 4), dict(kernel_size=7, padding=1), r"kernel \(7, 7\) is larger than the padded input \(6, 6\)"),
    ((1, 1, 4, 4), dict(kernel_size=3, padding=2), r"padding \(2, 2\) must be at most half the kernel size \(3, 3\)"),
    ((1, 1, 4, 4), dict(kernel_size=3, padding=-1), r"padding must be >= 0, got \(-1, -1\)"),
    ((1, 1, 4, 4), dict(kernel_size=2, stride=0), r"stride must be >= 1, got \(0, 0\)"),
    ((1, 1, 4, 4), dict(kernel_size=0), r"kernel_size must be >= 1"),
    ((1, 1, 4, 4), dict(kernel_size=(2, 2, 2)), r"kernel_size must be an int or a pair"),
])
def test_invalid_arguments(op, shape, kwargs, match):
    x = md.tensor(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=op + ": " + match):
        getattr(F, op)(x, **kwargs)


def test_adaptive_avg_pool_invalid():
    x = md.tensor(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected a 4-D input .*\(4, 4\)"):
        F.adaptive_avg_pool2d(md.tensor(np.zeros((4, 4))), 1)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be positive ints, got \(0, 2\)"):
        F.adaptive_avg_pool2d(x, (0, 2))


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("shape", [(0, 3, 6, 6), (2, 0, 6, 6)])
def test_empty_batch_or_channels(op, shape):
    # an empty last batch (or no channels) gives an empty output and an empty gradient, as in PyTorch
    x = md.tensor(np.zeros(shape, np.float32), requires_grad=True)
    y = op(x, 3, 2, 1)
    assert y.shape == shape[:2] + (3, 3) and y.dtype == np.float32
    y.sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == np.float32
