"""Inverted dropout: scaling, masks from minidl's seeded generator, identity in eval."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F


def test_dropout_scales_kept_units_and_zeros_the_rest():
    md.manual_seed(0)
    x = md.tensor(np.ones((100, 100)), requires_grad=True)
    y = F.dropout(x, p=0.3)
    vals = np.unique(y.data)
    np.testing.assert_allclose(vals, [0.0, 1 / 0.7])
    assert abs((y.data == 0).mean() - 0.3) < 0.02
    y.backward(np.ones(y.shape))
    np.testing.assert_array_equal(x.grad, y.data)  # gradient goes through the same mask


def test_dropout_gradcheck_with_fixed_seed():
    def f(x):
        md.manual_seed(3)  # the same mask on every evaluation
        return F.dropout(x, p=0.5)
    x = md.tensor(np.random.default_rng(0).standard_normal((4, 5)), requires_grad=True)
    y = f(x)
    assert (y.data == 0).any() and (y.data != 0).any()
    assert md.gradcheck(f, x)


def test_dropout_repeatable_by_seed_and_mean_preserved():
    x = md.tensor(np.ones(20000, np.float32))
    md.manual_seed(7)
    a = F.dropout(x, 0.5).data
    md.manual_seed(7)
    b = F.dropout(x, 0.5).data
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 1.0) < 0.03
    assert not np.array_equal(a, F.dropout(x, 0.5).data)


def test_dropout_eval_and_p0_are_identity():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(md.tensor([1.0]), p)
