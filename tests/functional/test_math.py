"""Elementwise math, reductions and matmul: float64 gradient checks and values against NumPy / torch."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def positive(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


BINARY = {
    "add": (F.add, np.add), "sub": (F.sub, np.subtract), "mul": (F.mul, np.multiply), "div": (F.div, np.divide),
}
SHAPE_PAIRS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3, 1), (1, 4)), ((2, 1, 3), (4, 1)), ((), (2, 2)), ((2, 2), ())]


@pytest.mark.parametrize("sa, sb", SHAPE_PAIRS)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradcheck_and_values(name, sa, sb):
    op, ref = BINARY[name]
    a, b = randn(*sa, seed=1), positive(*sb, seed=2)
    np.testing.assert_allclose(op(t(a), t(b)).data, ref(a, b), rtol=1e-12)
    assert md.gradcheck(op, t(a), t(b))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_a_constant_operand(name):
    op, ref = BINARY[name]
    a = randn(2, 3)
    assert md.gradcheck(lambda x: op(x, 2.5), t(a))
    assert md.gradcheck(lambda x: op(np.full((2, 3), 1.5), x), t(positive(2, 3)))


def test_neg():
    a = randn(2, 3)
    np.testing.assert_array_equal(F.neg(t(a)).data, -a)
    assert md.gradcheck(F.neg, t(a))


def test_pow_scalar_exponents():
    a = positive(2, 3)
    for e in (2, 3, 0.5, -1.5):
        np.testing.assert_allclose((t(a) ** e).data, a ** e, rtol=1e-12)
        assert md.gradcheck(lambda x: x ** e, t(a))
    assert md.gradcheck(lambda x: x ** 2, t(randn(2, 3)))  # integer power of negatives


def test_pow_zero_exponent_at_zero_base_has_zero_gradient():
    # d/dx x**0 = 0 everywhere (PyTorch gives 0); 0 * 0**-1 made it NaN at x = 0
    x = t([0.0, 2.0])
    with np.errstate(all="raise"):
        (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_pow_tensor_exponent_and_base():
    a, b = positive(2, 3), randn(3, seed=3)
    np.testing.assert_allclose(F.pow(t(a), t(b)).data, a ** b, rtol=1e-12)
    assert md.gradcheck(F.pow, t(a), t(b))
    assert md.gradcheck(lambda x: 2.0 ** x, t(b))


def test_pow_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a, b = positive(2, 3), randn(2, 3, seed=3)
    x, y = t(a), t(b)
    F.pow(x, y).sum().backward()
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (ta ** tb).sum().backward()
    np.testing.assert_allclose(x.grad, ta.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(y.grad, tb.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("name, ref, domain", [("exp", np.exp, randn), ("log", np.log, positive),
                                                ("sqrt", np.sqrt, positive)])
def test_unary(name, ref, domain):
    a = domain(2, 3)
    op = getattr(F, name)
    np.testing.assert_allclose(op(t(a)).data, ref(a), rtol=1e-12)
    np.testing.assert_allclose(getattr(t(a), name)().data, ref(a), rtol=1e-12)
    assert md.gradcheck(op, t(a))


MATMUL_SHAPES = [
    ((2, 3), (3, 4)),          # plain
    ((2, 2, 3), (2, 3, 4)),    # batched
    ((2, 2, 3), (3, 4)),       # batch dims broadcast from one side
    ((3,), (3, 4)),            # 1-D left
    ((2, 3), (3,)),            # 1-D right
    ((3,), (3,)),              # dot
    ((3,), (2, 3, 2)),         # 1-D left, batched right
    ((2, 1, 2, 3), (3, 3, 2)), # broadcast batch dims on both sides
]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    y = t(a) @ t(b)
    assert y.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(y.data, np.matmul(a, b), rtol=1e-12)
    assert md.gradcheck(F.matmul, t(a), t(b))


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul_gradients_against_torch(sa, sb):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    x, y = t(a), t(b)
    out = x @ y
    g = randn(*out.shape, seed=4)
    out.backward(g)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (ta @ tb).backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_matmul_one_side_constant():
    w = randn(3, 4)
    assert md.gradcheck(lambda x: x @ w, t(randn(2, 3)))
    assert md.gradcheck(lambda x: w.T @ x, t(randn(3, 2)))


@pytest.mark.parametrize("sa, sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 2, 3), (3, 3, 4))])
def test_matmul_shape_errors_name_op_and_shapes(sa, sb):
    with pytest.raises(ValueError) as e:
        t(randn(*sa)) @ t(randn(*sb))
    msg = str(e.value)
    assert "matmul" in msg and str(sa) in msg and str(sb) in msg


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcast_errors_name_op_and_shapes(op):
    with pytest.raises(ValueError) as e:
        getattr(F, op)(t(randn(2, 3)), t(randn(4)))
    msg = str(e.value)
    assert msg.startswith(op + ":") and "(2, 3)" in msg and "(4,)" in msg


REDUCE_ARGS = [dict(), dict(axis=0), dict(axis=1), dict(axis=-1, keepdims=True), dict(axis=(0, 2)),
               dict(axis=None, keepdims=True), dict(axis=(1, -1), keepdims=True)]


@pytest.mark.parametrize("kw", REDUCE_ARGS)
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reductions(name, kw):
    a = randn(2, 3, 4)  # distinct values: max has a unique argmax, so the numeric gradient is defined
    ref = getattr(np, name)(a, axis=kw.get("axis"), keepdims=kw.get("keepdims", False))
    y = getattr(F, name)(t(a), **kw)
    assert y.shape == np.shape(ref)
    np.testing.assert_allclose(y.data, ref, rtol=1e-12)
    np.testing.assert_allclose(getattr(t(a), name)(**kw).data, ref, rtol=1e-12)
    assert md.gradcheck(lambda x: getattr(F, name)(x, **kw), t(a))


def test_max_gradient_goes_to_argmax_and_splits_ties():
    x = t([[1.0, 5.0, 5.0], [7.0, 2.0, 3.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a = randn(3, 4)
    x = t(a)
    x.max(axis=0).backward(np.arange(4.0))
    ta = torch.tensor(a, requires_grad=True)
    ta.max(dim=0).values.backward(torch.arange(4.0, dtype=torch.float64))
    np.testing.assert_allclose(x.grad, ta.grad.numpy())


def test_mean_gradient_value():
    x = t(np.zeros((2, 5)))
    x.mean(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 5), 0.2))


def test_mean_of_integers_is_not_truncated():
    # NumPy's rule: the mean of ints is a float (it was cast back to int64: mean([1, 2]) gave 1)
    y = md.tensor([[1, 2], [4, 4]]).mean()
    assert y.dtype.kind == "f" and y.item() == 2.75
    np.testing.assert_array_equal(md.tensor([1, 2]).mean(axis=0, keepdims=True).data, [1.5])
    assert md.tensor(np.ones(3, np.float32)).mean().dtype == np.float32


def test_sum_to_inverts_broadcasting():
    g = np.ones((2, 3, 4))
    np.testing.assert_array_equal(F.sum_to(g, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(F.sum_to(g, (4,)), np.full((4,), 6.0))
    np.testing.assert_array_equal(F.sum_to(g, ()), 24.0)
    assert F.sum_to(g, (2, 3, 4)) is g


def test_composite_expression_gradcheck():
    # fan-out, reuse and a chain together: f(x, w) = sum(exp(-(x @ w) ** 2) * x.sum(axis=1, keepdims=True))
    def f(x, w):
        h = x @ w
        return (F.exp(-(h * h)) * x.sum(axis=1, keepdims=True) + h / (1.0 + h * h)).mean()
    assert md.gradcheck(f, t(randn(3, 2)), t(randn(2, 4, seed=1)))


def test_deep_chain_gradcheck():
    def f(x):
        for _ in range(30):
            x = F.tanh(x) * 1.1 + x * 0.1
        return x
    assert md.gradcheck(f, t(randn(4)))


@pytest.mark.parametrize("op", ["max", "mean"])
def test_empty_reduction_names_the_op(op):
    x = md.tensor(np.zeros((3, 0)))
    with pytest.raises(ValueError, match=rf"^{op}: cannot reduce over an empty axis \(input shape \(3, 0\), axis 1\)"):
        getattr(F, op)(x, axis=1)
    with pytest.raises(ValueError, match=rf"^{op}: cannot reduce over an empty axis"):
        getattr(x, op)()
    with pytest.raises(ValueError, match=rf"^{op}: axis 2 is out of range for an input of shape \(3, 0\)"):
        getattr(F, op)(x, axis=2)
    assert getattr(F, op)(x, axis=0).shape == (0,)   # reducing a non-empty axis of an empty array is fine
