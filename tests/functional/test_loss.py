"""Cross-entropy over integer targets: value vs torch, gradient, stability, target validation."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


TARGET = np.array([0, 3, 3, 1])


def reference(a, target):
    shifted = a - a.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(target)), target].mean()


def test_cross_entropy_value_and_gradcheck():
    a = randn(4, 5)
    assert F.cross_entropy(t(a), TARGET).item() == pytest.approx(reference(a, TARGET), rel=1e-12)
    assert md.gradcheck(lambda x: F.cross_entropy(x, TARGET), t(a))


def test_cross_entropy_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a = randn(4, 5)
    x = t(a)
    loss = F.cross_entropy(x, TARGET)
    loss.backward()
    ta = torch.tensor(a, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(ta, torch.tensor(TARGET))
    tl.backward()
    assert loss.item() == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(x.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("target", [TARGET, TARGET.astype(np.int32), md.tensor(TARGET), [0, 3, 3, 1]],
                         ids=["int64", "int32", "Tensor", "list"])
def test_cross_entropy_target_kinds(target):
    a = randn(4, 5)
    assert F.cross_entropy(t(a), target).item() == pytest.approx(reference(a, TARGET), rel=1e-12)


def test_cross_entropy_rejects_float_targets():
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(t(randn(4, 5)), TARGET.astype(np.float32))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(t(randn(4, 5)), md.tensor([0.0, 1.0, 2.0, 3.0]))


@pytest.mark.parametrize("bad", [[0, 5, 1, 1], [0, -1, 1, 1]])
def test_cross_entropy_rejects_out_of_range_classes(bad):
    with pytest.raises(ValueError, match=r"cross_entropy: targets must lie in \[0, 4\]"):
        F.cross_entropy(t(randn(4, 5)), np.array(bad))


def test_cross_entropy_shape_errors():
    with pytest.raises(ValueError, match="cross_entropy: target must have shape"):
        F.cross_entropy(t(randn(4, 5)), np.array([0, 1]))
    with pytest.raises(ValueError, match="cross_entropy: logits must be"):
        F.cross_entropy(t(randn(4)), np.array([0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_at_huge_logits(dtype):
    a = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype=dtype)
    x = md.tensor(a, requires_grad=True)
    with np.errstate(over="raise", invalid="raise"):
        loss = F.cross_entropy(x, np.array([1, 2]))
        loss.backward()
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx((2000 + np.log(2)) / 2, rel=1e-6)
    np.testing.assert_allclose(x.grad, [[0.5, -0.5, 0.0], [0.0, 0.25, -0.25]], atol=1e-7)
