"""Activations: ReLU, tanh, sigmoid, softmax, log_softmax — gradients, values, stability."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(*shape):
    a = randn(*shape)
    return a + np.sign(a) * 0.1  # ReLU's kink stays far from the finite-difference step


def np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_relu():
    a = away_from_zero(3, 4)
    np.testing.assert_array_equal(F.relu(t(a)).data, np.maximum(a, 0))
    np.testing.assert_array_equal(t(a).relu().data, np.maximum(a, 0))
    assert md.gradcheck(F.relu, t(a))
    x = t([-1.0, 0.0, 2.0])
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])  # PyTorch's convention: 0 at 0


@pytest.mark.parametrize("name, ref", [("tanh", np.tanh), ("sigmoid", lambda a: 1 / (1 + np.exp(-a)))])
def test_tanh_sigmoid(name, ref):
    a = randn(3, 4) * 2
    np.testing.assert_allclose(getattr(F, name)(t(a)).data, ref(a), rtol=1e-12)
    assert md.gradcheck(getattr(F, name), t(a))


def test_sigmoid_saturates_without_overflow():
    with np.errstate(all="raise"):
        y = F.sigmoid(md.tensor([-1000.0, 0.0, 1000.0])).data
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family(name, axis):
    a = randn(3, 4, 2)
    ref = np_softmax(a, axis)
    ref = np.log(ref) if name == "log_softmax" else ref
    np.testing.assert_allclose(getattr(F, name)(t(a), axis=axis).data, ref, rtol=1e-10, atol=1e-14)
    assert md.gradcheck(lambda x: getattr(F, name)(x, axis=axis), t(a))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_against_torch(name):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a, g = randn(3, 5), randn(3, 5, seed=1)
    x = t(a)
    y = getattr(F, name)(x, axis=1)
    y.backward(g)
    ta = torch.tensor(a, requires_grad=True)
    ty = getattr(torch, name)(ta, dim=1)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_stable_at_huge_logits(dtype):
    a = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise"):
        s = F.softmax(md.tensor(a)).data
        ls = F.log_softmax(md.tensor(a)).data
    assert np.isfinite(s).all() and np.isfinite(ls).all()
    e = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(s, [[e, 0.0, 1 - e], [1 / 3] * 3], rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(ls[0, [0, 2]], np.log([e, 1 - e]), rtol=1e-5)
    assert ls[0, 1] == pytest.approx(-2000 + np.log(e), rel=1e-5)
    x = md.tensor(a, requires_grad=True)
    F.log_softmax(x).sum().backward()
    assert np.isfinite(x.grad).all()
