"""Shape ops: reshape, transpose, getitem, broadcast_to, concat, flatten."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(6, 2), (3, 4), (-1,), (2, -1, 2), (12,), (1, 12, 1)])
def test_reshape(shape):
    a = randn(2, 3, 2)
    y = F.reshape(t(a), shape)
    np.testing.assert_array_equal(y.data, a.reshape(shape))
    assert md.gradcheck(lambda x: F.reshape(x, shape), t(a))
    assert t(a).reshape(*shape).shape == a.reshape(shape).shape
    assert t(a).reshape(shape).shape == a.reshape(shape).shape


def test_reshape_error_names_op_and_both_shapes():
    with pytest.raises(ValueError) as e:
        F.reshape(t(randn(2, 3)), (4, 2))
    msg = str(e.value)
    assert msg.startswith("reshape:") and "(2, 3)" in msg and "(4, 2)" in msg


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (0, 2, 1), (-1, 0, 1)])
def test_transpose(axes):
    a = randn(2, 3, 4)
    y = F.transpose(t(a), axes)
    np.testing.assert_array_equal(y.data, np.transpose(a, axes))
    assert md.gradcheck(lambda x: F.transpose(x, axes), t(a))


def test_transpose_method_forms_and_error():
    a = randn(2, 3)
    np.testing.assert_array_equal(t(a).T.data, a.T)
    np.testing.assert_array_equal(t(a).transpose(1, 0).data, a.T)
    np.testing.assert_array_equal(t(a).transpose().data, a.T)
    with pytest.raises(ValueError, match="transpose"):
        F.transpose(t(a), (0, 0))


BASIC = [1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, 1), (slice(None, None, 2), slice(1, None)),
         (None, 1), (0, 0, 0), (slice(None, None, -1),)]


@pytest.mark.parametrize("index", BASIC, ids=[str(i) for i in BASIC])
def test_getitem_basic(index):
    a = randn(3, 4, 2)
    np.testing.assert_array_equal(t(a)[index].data, a[index])
    assert md.gradcheck(lambda x: x[index], t(a))


ADVANCED = [np.array([0, 2, 0, 0]), [1, 1], (np.array([0, 2, 2]), np.array([1, 1, 3])),
            (slice(None), np.array([3, 0, 3])), (np.array([[0, 1], [1, 1]]), slice(0, 1))]


@pytest.mark.parametrize("index", ADVANCED, ids=range(len(ADVANCED)))
def test_getitem_integer_arrays_accumulate_repeats(index):
    a = randn(3, 4, 2)
    y = t(a)[index]
    np.testing.assert_array_equal(y.data, a[index])
    assert md.gradcheck(lambda x: x[index], t(a))


def test_getitem_repeated_index_counts():
    x = t(np.zeros(4))
    x[np.array([1, 1, 1, 3])].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 0, 1])


def test_getitem_with_tensor_index_and_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    a = randn(4, 3)
    idx = np.array([3, 0, 3, 1])
    x = t(a)
    x[md.tensor(idx), 1:].backward(np.arange(8.0).reshape(4, 2))
    ta = torch.tensor(a, requires_grad=True)
    ta[torch.tensor(idx), 1:].backward(torch.arange(8.0, dtype=torch.float64).reshape(4, 2))
    np.testing.assert_array_equal(x.grad, ta.grad.numpy())


@pytest.mark.parametrize("src, dst", [((3,), (2, 3)), ((2, 1), (2, 4)), ((1, 3, 1), (2, 3, 2)), ((), (2, 2))])
def test_broadcast_to(src, dst):
    a = randn(*src)
    y = F.broadcast_to(t(a), dst)
    np.testing.assert_array_equal(y.data, np.broadcast_to(a, dst))
    assert md.gradcheck(lambda x: F.broadcast_to(x, dst), t(a))
    assert md.gradcheck(lambda x: x.broadcast_to(dst), t(a))


def test_broadcast_to_error():
    with pytest.raises(ValueError, match=r"broadcast_to: .*\(3,\).*\(2, 4\)"):
        F.broadcast_to(t(randn(3)), (2, 4))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = {0: [(1, 3, 2), (2, 3, 2)], 1: [(2, 1, 2), (2, 3, 2), (2, 2, 2)], -1: [(2, 3, 1), (2, 3, 3)]}[axis]
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    y = F.concat([t(a) for a in arrays], axis=axis)
    np.testing.assert_array_equal(y.data, np.concatenate(arrays, axis=axis))
    assert md.gradcheck(lambda *xs: F.concat(list(xs), axis=axis), *[t(a) for a in arrays])


def test_concat_default_axis_is_channels_and_mixed_constants():
    a, b = randn(2, 1, 3), randn(2, 2, 3)
    assert F.concat([t(a), t(b)]).shape == (2, 3, 3)
    x = t(a)
    F.concat([x, t(b, grad=False)]).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones_like(a))


def test_concat_errors():
    with pytest.raises(ValueError) as e:
        F.concat([t(randn(2, 3)), t(randn(3, 3))], axis=1)
    msg = str(e.value)
    assert msg.startswith("concat:") and "(2, 3)" in msg and "(3, 3)" in msg
    with pytest.raises(ValueError, match="concat"):
        F.concat([])


@pytest.mark.parametrize("start, shape", [(1, (2, 24)), (0, (48,)), (2, (2, 3, 8))])
def test_flatten(start, shape):
    a = randn(2, 3, 4, 2)
    y = F.flatten(t(a), start)
    assert y.shape == shape
    np.testing.assert_array_equal(y.data, a.reshape(shape))
    assert md.gradcheck(lambda x: F.flatten(x, start), t(a[:1, :2, :2]))


def test_flatten_empty_batch():
    assert F.flatten(t(np.zeros((0, 3, 2)))).shape == (0, 6)
