"""F.linear: y = x W^T + b."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("xshape", [(3, 4), (2, 3, 4)])
def test_linear_with_bias(xshape):
    x, w, b = randn(*xshape), randn(5, 4, seed=1), randn(5, seed=2)
    np.testing.assert_allclose(F.linear(t(x), t(w), t(b)).data, x @ w.T + b, rtol=1e-12)
    assert md.gradcheck(F.linear, t(x), t(w), t(b))


def test_linear_without_bias():
    x, w = randn(3, 4), randn(5, 4, seed=1)
    np.testing.assert_allclose(F.linear(t(x), t(w)).data, x @ w.T, rtol=1e-12)
    assert md.gradcheck(F.linear, t(x), t(w))
    assert md.gradcheck(lambda x: F.linear(x, t(w, grad=False)), t(x))  # only the input needs grad


def test_linear_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    x, w, b, g = randn(3, 4), randn(5, 4, seed=1), randn(5, seed=2), randn(3, 5, seed=3)
    mx, mw, mb = t(x), t(w), t(b)
    F.linear(mx, mw, mb).backward(g)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.linear(tx, tw, tb).backward(torch.tensor(g))
    for m, r in ((mx, tx), (mw, tw), (mb, tb)):
        np.testing.assert_allclose(m.grad, r.grad.numpy(), rtol=1e-12)


def test_linear_shape_errors():
    with pytest.raises(ValueError) as e:
        F.linear(t(randn(3, 4)), t(randn(5, 6)))
    msg = str(e.value)
    assert msg.startswith("linear:") and "(3, 4)" in msg and "(5, 6)" in msg
    with pytest.raises(ValueError, match=r"linear: bias has shape \(4,\), expected \(5,\)"):
        F.linear(t(randn(3, 4)), t(randn(5, 4)), t(randn(4)))
