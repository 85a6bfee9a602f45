"""local_response_norm and batch_norm: gradient checks, PyTorch comparisons, buffers, errors."""
import itertools

import numpy as np
import pytest

import minidl as md
from minidl import backend as md_backend
from minidl import functional as F


def _rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


# ---- local response normalisation ---------------------------------------------------------------------

@pytest.mark.parametrize("size,channels", list(itertools.product((1, 2, 3, 5, 9), (1, 3, 6))))
def test_lrn_gradcheck(size, channels, device):
    # alpha large enough that the cross-channel terms matter; channels < size covers clipped windows
    x = md.tensor(np.random.default_rng(size * 10 + channels).standard_normal((2, channels, 2, 3)),
                  requires_grad=True, device=device)
    md.gradcheck(lambda x: F.local_response_norm(x, size, alpha=0.2, beta=0.75, k=1.5), x)
    md.gradcheck(lambda x: F.local_response_norm(x, size, alpha=0.5, beta=0.6, k=1.0), x)


def test_lrn_3d_input_gradcheck():
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 4, 5)), requires_grad=True)
    md.gradcheck(lambda x: F.local_response_norm(x, 3, alpha=0.3), x)


def test_lrn_paper_formula_by_hand():
    # b[c] = a[c] / (k + alpha * sum of a^2 over channels c-2..c+2) ** beta, alpha not divided by n
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape(1, 6, 1, 1)
    y = F.local_response_norm(md.tensor(a), 5, alpha=1e-2, beta=0.75, k=2.0).numpy().ravel()
    sums = [1 + 4 + 9, 1 + 4 + 9 + 16, 1 + 4 + 9 + 16 + 25, 4 + 9 + 16 + 25 + 36, 9 + 16 + 25 + 36, 16 + 25 + 36]
    expected = a.ravel() / (2.0 + 1e-2 * np.array(sums)) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_lrn_float32_stays_float32():
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.local_response_norm(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("size,channels,beta", [(5, 16, 0.75), (2, 6, 0.75), (4, 7, 0.6), (9, 5, 0.75), (1, 3, 0.9),
                                                (3, 96, 0.75)])
def test_lrn_matches_torch(size, channels, beta):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    alpha, k = 1e-2, 2.0
    x_np = np.random.default_rng(size).standard_normal((2, channels, 5, 4)).astype(np.float32) * 3
    gy = np.random.default_rng(1).standard_normal(x_np.shape).astype(np.float32)
    x = md.tensor(x_np, requires_grad=True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    y.backward(gy)
    xt = torch.tensor(x_np, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha * size, beta, k)  # torch divides alpha by size
    yt.backward(torch.tensor(gy))
    assert _rel_err(y.numpy(), yt.detach().numpy()) <= 1e-4
    assert _rel_err(x.grad, xt.grad.numpy()) <= 1e-4


@pytest.mark.parametrize("kwargs,shape,match", [
    (dict(size=0), (1, 3, 2, 2), r"local_response_norm: size must be an int >= 1, got 0"),
    (dict(size=2.5), (1, 3, 2, 2), r"local_response_norm: size must be an int >= 1, got 2.5"),
    (dict(), (3, 2), r"local_response_norm: expected an input with at least 3 dims .*\(3, 2\)"),
    (dict(k=0.0), (1, 3, 2, 2), r"local_response_norm: need k > 0 and alpha >= 0, got k=0.0"),
])
def test_lrn_invalid(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        F.local_response_norm(md.tensor(np.ones(shape, dtype=np.float32)), **kwargs)


# ---- batch normalisation ------------------------------------------------------------------------------

SHAPES = [(4, 3), (3, 2, 3, 2), (2, 3, 1, 1)]


def _buffers(c):
    rng = np.random.default_rng(c)
    return rng.standard_normal(c), rng.uniform(0.5, 2.0, c)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_gradcheck(shape, affine, device):
    rng = np.random.default_rng(len(shape))
    c = shape[1]
    x = md.tensor(rng.standard_normal(shape) * 2 + 1, requires_grad=True, device=device)
    w = md.tensor(rng.uniform(0.5, 1.5, c), requires_grad=True, device=device) if affine else None
    b = md.tensor(rng.standard_normal(c), requires_grad=True, device=device) if affine else None
    rm, rv = (md_backend.to_device(a, device) for a in _buffers(c))
    inputs = (x, w, b) if affine else (x,)
    md.gradcheck(lambda x, w=None, b=None: F.batch_norm(x, rm, rv, w, b, training=True), *inputs)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_eval_gradcheck_and_value(shape):
    rng = np.random.default_rng(7)
    c = shape[1]
    x = md.tensor(rng.standard_normal(shape), requires_grad=True)
    w = md.tensor(rng.uniform(0.5, 1.5, c), requires_grad=True)
    b = md.tensor(rng.standard_normal(c), requires_grad=True)
    rm, rv = _buffers(c)
    md.gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), x, w, b)
    bshape = (1, c) + (1,) * (len(shape) - 2)
    expected = ((x.data - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * w.data.reshape(bshape)
                + b.data.reshape(bshape))
    np.testing.assert_allclose(F.batch_norm(x, rm, rv, w, b, training=False).numpy(), expected, rtol=1e-12)
    # eval leaves the buffers alone
    rm0, rv0 = _buffers(c)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_training_updates_buffers_in_place():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 2, 2)).astype(np.float32) * 3 + 5
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm_id, rv_id = id(rm), id(rv)
    y = F.batch_norm(md.tensor(x), rm, rv, None, None, training=True, momentum=0.1)
    assert id(rm) == rm_id and id(rv) == rv_id and rm.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    # the output itself uses the biased batch variance
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.numpy().var(axis=(0, 2, 3)), 1 - 1e-5 / x.var(axis=(0, 2, 3)), rtol=1e-4)


@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(shape, training):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    rng = np.random.default_rng(3)
    c = shape[1]
    x_np = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    w_np, b_np = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    gy = rng.standard_normal(shape).astype(np.float32)

    x, w, b = (md.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    for _ in range(3):  # a few steps, so momentum compounds in the buffers
        y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-3)
    y.backward(gy)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    for _ in range(3):
        yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training=training, momentum=0.2, eps=1e-3)
    yt.backward(torch.tensor(gy))

    assert y.dtype == np.float32 and x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    assert _rel_err(y.numpy(), yt.detach().numpy()) <= 1e-4
    assert _rel_err(rm, rm_t.numpy()) <= 1e-4 and _rel_err(rv, rv_t.numpy()) <= 1e-4
    for ours, theirs in ((x, xt), (w, wt), (b, bt)):
        assert _rel_err(ours.grad, theirs.grad.numpy()) <= 1e-4


def test_batch_norm_without_buffers_uses_batch_statistics():
    x = np.random.default_rng(0).standard_normal((6, 2))
    y = F.batch_norm(md.tensor(x), None, None, training=False).numpy()
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("args,match", [
    (((2, 3, 4, 4), 4, None),
     r"batch_norm: input has 3 channels \(shape \(2, 3, 4, 4\)\) but running_mean has shape \(4,\)"),
    (((2, 3), 3, 5), r"batch_norm: input has 3 channels \(shape \(2, 3\)\) but weight has shape \(5,\)"),
    (((3,), 3, None), r"batch_norm: expected an input with at least 2 dims .*\(3,\)"),
    (((1, 3), 3, None), r"batch_norm: training needs more than 1 value per channel, got input shape \(1, 3\)"),
])
def test_batch_norm_invalid(args, match):
    shape, c_buf, c_weight = args
    w = md.tensor(np.ones(c_weight, np.float32)) if c_weight else None
    with pytest.raises(ValueError, match=match):
        F.batch_norm(md.tensor(np.ones(shape, np.float32)), np.zeros(c_buf, np.float32), np.ones(c_buf, np.float32),
                     w, None, training=True)


@pytest.mark.parametrize("shape", [(0, 4, 5, 5), (0, 4, 7), (2, 0, 3, 3)])
def test_lrn_empty_input(shape):
    x = md.tensor(np.zeros(shape, np.float32), requires_grad=True)
    y = F.local_response_norm(x, 3)
    assert y.shape == shape and y.dtype == np.float32
    y.sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == np.float32
