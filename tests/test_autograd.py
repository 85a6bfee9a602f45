"""The autograd core: graph recording, the backward traversal, gradient accumulation, freeing, dtypes."""
import gc
import weakref

import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def leaf(shape, rng, dtype=np.float64):
    return md.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)


def test_readme_example():
    x = md.tensor([1., 2.], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2., 4.])


def test_python_numbers_become_int64_and_float32():
    assert md.tensor([1, 2, 3]).dtype == np.int64
    assert md.tensor(3).dtype == np.int64
    assert md.tensor([1.5, 2.0]).dtype == np.float32
    assert md.tensor(2.5).dtype == np.float32
    assert md.tensor([[1, 2.5]]).dtype == np.float32
    assert md.tensor(np.zeros(2, np.float64)).dtype == np.float64  # arrays keep their dtype
    assert md.tensor(np.float64(1.0)).dtype == np.float64          # and so do NumPy scalars
    assert md.tensor([1, 2], dtype="float64").dtype == np.float64


def test_tensor_copies_its_array_detach_shares():
    a = np.ones(3, np.float32)
    x = md.tensor(a, requires_grad=True)
    x.data -= 1.0  # what an optimiser step does
    np.testing.assert_array_equal(a, np.ones(3))
    d = x.detach()
    assert d.data is x.data


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        md.tensor([1, 2], requires_grad=True)


def test_deep_chain_backward_is_iterative():
    x = md.tensor([0.5], requires_grad=True, dtype="float64")
    y = x
    n = 100_000
    for _ in range(n):
        y = y + 1.0
    y.sum().backward()
    assert y.data[0] == pytest.approx(0.5 + n)
    np.testing.assert_array_equal(x.grad, [1.0])


def test_deep_chain_of_multiplies_gradient():
    # d/dx of x * c * c * ... (200 times) is c**200; a traversal that skipped or doubled a node would differ
    x = md.tensor([1.0], requires_grad=True, dtype="float64")
    y = x
    for _ in range(200):
        y = y * 1.01
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad, [1.01 ** 200], rtol=1e-12)


def test_x_times_x_accumulates():
    x = md.tensor([3.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, -4.0])


def test_fan_out_accumulates():
    x = md.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    a, b, c = x * 2.0, x.exp(), x * x * x
    (a + b + c).sum().backward()
    np.testing.assert_allclose(x.grad, 2.0 + np.exp([1.0, 2.0]) + 3 * np.array([1.0, 4.0]))


def test_diamond_accumulates_before_propagating():
    # x -> a -> (b, c) -> d: a's gradient must be complete (sum of both branches) before a's backward runs.
    x = md.tensor([0.3, -0.7], requires_grad=True, dtype="float64")
    a = x.exp()
    b = a * 3.0
    c = a.log()            # = x
    d = (b * c).sum()      # 3 e^x x
    d.backward()
    xv = np.array([0.3, -0.7])
    np.testing.assert_allclose(x.grad, 3 * np.exp(xv) * (xv + 1))


def test_unbalanced_diamond():
    # one branch long, one short: reverse topological order, not a breadth-first guess, is needed
    x = md.tensor([2.0], requires_grad=True, dtype="float64")
    a = x * 1.0
    long = a
    for _ in range(10):
        long = long + 0.0
    (long * a).sum().backward()
    np.testing.assert_allclose(x.grad, [4.0])


def test_grads_accumulate_across_backward_calls():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_saved_arrays_are_freed_after_backward():
    x = md.tensor(np.ones(3), requires_grad=True)
    y = x * x
    f = y.creator
    z = y.sum()
    assert f.a is not None
    z.backward()
    assert f.freed
    assert not hasattr(f, "a") and not hasattr(f, "b")
    assert f.inputs == ()


def test_functions_that_receive_no_gradient_are_freed_too():
    # a Function whose backward returns None for an input that requires grad (a student's op with a
    # non-differentiable input): the op that made that input gets no gradient, but must still drop
    # its saved arrays after a backward without retain_graph
    class FirstOnly(md.Function):
        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            return gy, None
    a, b0 = md.tensor(np.ones(3), requires_grad=True), md.tensor(np.ones(3), requires_grad=True)
    b = b0 * 2.0
    FirstOnly()(a, b).sum().backward()
    assert b.creator.freed and not hasattr(b.creator, "a")
    assert b0.grad is None and a.grad is not None


def test_saved_array_memory_is_released():
    class Probe(np.ndarray):
        pass
    data = np.ones(4).view(Probe)
    x = md.tensor(data, requires_grad=True)
    y = x.exp()  # Exp saves its output
    saved = weakref.ref(y.creator.y)
    loss = (y * 2.0).sum()
    del y
    loss.backward()
    gc.collect()
    assert saved() is None


def test_second_backward_raises_clear_error():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    assert not y.creator.freed
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_no_grad_records_nothing():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    with md.no_grad():
        assert not md.is_grad_enabled()
        y = (x * x).sum()
    assert md.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ValueError):
        with md.no_grad():
            raise ValueError
    assert md.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = md.tensor([1.0], requires_grad=True)
    with md.no_grad():
        with md.enable_grad():
            y = x * 2.0
    assert y.requires_grad and y.creator is not None


def test_detach_cuts_the_graph():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2.0).detach()
    assert d.creator is None and not d.requires_grad
    np.testing.assert_array_equal(d.data, [2.0, 4.0])
    y = (x * d).sum()  # d is a constant here
    y.backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_leaves_keep_grad_intermediates_do_not():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    k = (x * 2.0).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad, h.data)
    np.testing.assert_allclose(x.grad, 12 * x.data)


def test_constants_get_no_grad():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    c = md.tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None


@pytest.mark.parametrize("sx, sy", [((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((), (2, 3)),
                                    ((1, 1), (2, 3))])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcasting_sums_back_to_input_shape(op, sx, sy):
    rng = np.random.default_rng(0)
    a, b = leaf(sx, rng), leaf(sy, rng)
    b.data = np.abs(b.data) + 1.0
    y = getattr(F, op)(a, b)
    y.backward(np.ones(y.shape))
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    # the gradient of sum(a + b) with respect to a is the number of times each a element was used
    if op == "add":
        reps = int(np.prod(y.shape)) // max(int(np.prod(sx)), 1)
        np.testing.assert_allclose(a.grad, np.full(sx, reps))


def test_backward_on_non_scalar_needs_grad():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="one-element"):
        y.backward()
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [2.0, 20.0])


def test_backward_on_one_element_non_scalar():
    x = md.tensor([[3.0]], requires_grad=True)
    (x * x).backward()
    np.testing.assert_allclose(x.grad, [[6.0]])


def test_backward_with_tensor_grad():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    (x * 2.0).backward(md.tensor([1.0, 1.0]))
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


def test_reflected_operators_and_numpy_on_the_left():
    x = md.tensor([2.0, 3.0], requires_grad=True, dtype="float64")
    y = 2.0 / (1.0 - x) + 3.0 * x + np.array([1.0, 1.0]) + 2.0 ** x - (-x)
    assert isinstance(y, md.Tensor)
    y.sum().backward()
    xv = np.array([2.0, 3.0])
    np.testing.assert_allclose(y.data, 2.0 / (1.0 - xv) + 3.0 * xv + 1.0 + 2.0 ** xv + xv)
    np.testing.assert_allclose(x.grad, 2.0 / (1.0 - xv) ** 2 + 3.0 + 2.0 ** xv * np.log(2.0) + 1.0)


def test_comparisons_give_boolean_arrays():
    x = md.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x > 1.5, [False, True, True])
    np.testing.assert_array_equal(x <= md.tensor([1.0, 1.0, 4.0]), [True, False, True])


def test_item_numpy_len_repr():
    x = md.tensor([[1.5, 2.0]], requires_grad=True)
    assert len(x) == 1 and x.shape == (1, 2) and x.ndim == 2 and x.size == 2
    assert x.device == "cpu"
    assert isinstance(x.numpy(), np.ndarray)
    assert md.tensor(4.5).item() == 4.5
    assert "requires_grad=True" in repr(x) and "float32" in repr(x)


def test_to_cpu_is_identity():
    x = md.tensor([1.0])
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")


def test_astype_is_differentiable():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    y = x.astype("float64")
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


class TwoOutputs(md.Function):
    """(x * 2, x * 3): a multi-output Function, to check unused outputs get zero gradients."""

    def forward(self, x):
        return x * 2, x * 3

    def backward(self, g1, g2):
        return 2 * g1 + 3 * g2


def test_multi_output_function_with_one_output_used():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    a, b = TwoOutputs()(x)
    b.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_wrong_gradient_count_or_shape_is_reported():
    class BadCount(md.Function):
        def forward(self, x, y):
            return x + y

        def backward(self, g):
            return g

    class BadShape(md.Function):
        def forward(self, x):
            return x.sum()

        def backward(self, g):
            return g

    x = md.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="BadCount.backward returned 1 gradients for 2 inputs"):
        BadCount()(x, x).sum().backward()
    with pytest.raises(RuntimeError, match=r"BadShape.backward returned a gradient of shape \(\)"):
        BadShape()(x).backward()


# --- dtype preservation: float32 in -> float32 out (and float32 gradients) for every op ------------------

def _ops():
    t = md.tensor
    idx = np.array([0, 2, 2])
    return {
        "add": lambda x: x + 1.0, "sub": lambda x: 2.0 - x, "mul": lambda x: x * 3, "div": lambda x: x / 2,
        "neg": lambda x: -x, "pow_scalar": lambda x: x ** 2, "pow_float": lambda x: (x * x + 1.0) ** 0.5,
        "pow_tensor": lambda x: (x * x + 1.0) ** x, "rpow": lambda x: 2 ** x,
        "matmul": lambda x: x @ t(np.ones((4, 2), np.float32)), "exp": F.exp,
        "log": lambda x: F.log(x * x + 1.0), "sqrt": lambda x: F.sqrt(x * x + 1.0),
        "sum": lambda x: x.sum(axis=0), "sum_all": lambda x: x.sum(), "max_all": lambda x: x.max(), "mean": lambda x: x.mean(), "max": lambda x: x.max(axis=1),
        "reshape": lambda x: x.reshape(4, 3), "transpose": lambda x: x.T,
        "getitem": lambda x: x[1:, idx], "broadcast_to": lambda x: x.broadcast_to((2, 3, 4)),
        "concat": lambda x: F.concat([x, x], axis=0), "flatten": lambda x: F.flatten(x[None], 1),
        "relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid, "softmax": F.softmax, "log_softmax": F.log_softmax,
        "linear": lambda x: F.linear(x, t(np.ones((5, 4), np.float32)), t(np.ones(5, np.float32))),
        "dropout": lambda x: F.dropout(x, 0.5), "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 1, 3])),
    }


@pytest.mark.parametrize("name", sorted(_ops()))
def test_float32_in_float32_out(name):
    md.manual_seed(0)
    x = md.tensor(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    y = _ops()[name](x)
    assert y.dtype == np.float32, f"{name} returned {y.dtype}"
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32, f"{name} backward returned {x.grad.dtype}"


@pytest.mark.parametrize("name", sorted(_ops()))
def test_float64_stays_float64(name):
    md.manual_seed(0)
    x = md.tensor(np.random.default_rng(1).standard_normal((3, 4)), requires_grad=True)
    y = _ops()[name](x)
    if name in ("matmul", "linear"):  # the float32 weight promotes, as NumPy does
        return
    assert y.dtype == np.float64, f"{name} returned {y.dtype}"


def test_gradient_has_the_dtype_of_its_tensor_when_a_float64_constant_promotes():
    # float32 tensor op float64 array: the result promotes to float64 (as NumPy and PyTorch do), but
    # each leaf's .grad must keep the leaf's own dtype, as PyTorch's does
    x = md.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    w = md.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    y = (x * np.full(3, 2.0)) + np.ones((2, 3))
    assert y.dtype == np.float64
    (F.linear(y, w).sum() + (x / np.float64(2.0)).sum()).backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, np.full((2, 3), 4 * 2.0 + 0.5))
    # a grad= argument of another dtype is cast too
    z = md.tensor(np.ones(2, np.float32), requires_grad=True)
    (z * 2.0).backward(md.tensor(np.ones(2)))
    assert z.grad.dtype == np.float32
