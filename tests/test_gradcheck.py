"""md.gradcheck: passes correct backwards, and FAILS, with a readable table, on wrong ones."""
import numpy as np
import pytest

import minidl as md
from minidl import backend
from minidl.autograd import Function
from minidl.functional.math import sum_to


def t(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---- deliberately wrong Functions (each next to what the correct line would be) ------------------------

class FlippedSignTanh(Function):
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, gy):
        return -gy * (1 - self.y ** 2)  # correct: +gy * (1 - y^2)


class MatMulMissingTranspose(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        ga = gy @ self.b.T
        gb = (self.a.T @ gy).T.reshape(self.b.shape)  # correct: a.T @ gy (square shapes hide the bug)
        return ga, gb


class AddForgottenBroadcastSum(Function):
    def forward(self, a, b):
        self.shape_b = b.shape
        return a + b

    def backward(self, gy):
        # correct: sum_to(gy, shape_b); this takes the first row only (shape right, values wrong)
        return gy, gy[:1].reshape(self.shape_b)


class ShiftOffByOne(Function):
    """y[i] = x[i + 1] (a shift): the backward puts gradients one position off."""

    def forward(self, x):
        self.n = x.shape[0]
        return x[1:].copy()

    def backward(self, gy):
        gx = np.zeros(self.n, dtype=gy.dtype)
        gx[:-1] = gy  # correct: gx[1:] = gy
        return gx


class CorrectShift(ShiftOffByOne):
    def backward(self, gy):
        gx = np.zeros(self.n, dtype=gy.dtype)
        gx[1:] = gy
        return gx


class ScaledByTwo(Function):
    def forward(self, x):
        return x * 3

    def backward(self, gy):
        return gy * 6  # correct: gy * 3


def test_correct_ops_pass():
    assert md.gradcheck(lambda x: CorrectShift()(x), t(randn(5)))
    assert md.gradcheck(lambda a, b: (a @ b).sum(axis=0), t(randn(3, 3)), t(randn(3, 3, seed=1)))
    assert md.gradcheck(lambda a, b: a + b, t(randn(3, 4)), t(randn(4, seed=1)))


def test_accepts_float32_and_plain_arrays_and_passes_constants_through():
    x32 = md.tensor(randn(2, 3).astype(np.float32), requires_grad=True)
    assert md.gradcheck(lambda x: (x * x).sum(), x32)   # checked in float64
    assert md.gradcheck(lambda x, k: x * k, randn(2, 3), 3)   # arrays become float64 inputs; ints pass through
    assert md.gradcheck(lambda x, c: x * c, t(randn(2)), t(randn(2), grad=False))


def test_multiple_outputs():
    assert md.gradcheck(lambda x: (x * 2.0, x.exp()), t(randn(3)))


WRONG = {
    "flipped sign": (lambda x: FlippedSignTanh()(x), [randn(2, 3)], 0),
    "missing transpose": (lambda a, b: MatMulMissingTranspose()(a, b), [randn(3, 3), randn(3, 3, seed=1)], 1),
    "forgotten broadcast sum": (lambda a, b: AddForgottenBroadcastSum()(a, b), [randn(3, 4), randn(1, 4, seed=1)], 1),
    "off-by-one": (lambda x: ShiftOffByOne()(x), [randn(5)], 0),
    "factor of two": (lambda x: ScaledByTwo()(x), [randn(4)], 0),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_backward_fails_with_a_table(name):
    fn, arrays, wrong_input = WRONG[name]
    inputs = [t(a) for a in arrays]
    with pytest.raises(md.GradcheckError) as e:
        md.gradcheck(fn, *inputs, name=name)
    msg = str(e.value)
    lines = msg.splitlines()
    assert lines[0].startswith(f"gradcheck failed for {name}: 1 of {len(arrays)}")
    header = lines[2]
    for col in ("input", "shape", "max abs err", "max rel err", "worst index"):
        assert col in header
    rows = {int(line.split()[0]): line for line in lines[3:3 + len(arrays)]}
    assert rows[wrong_input].rstrip().endswith("WRONG")
    assert str(tuple(arrays[wrong_input].shape)) in rows[wrong_input]
    for i, line in rows.items():
        if i != wrong_input:
            assert line.rstrip().endswith("ok")
    assert "atol" in msg and "rtol" in msg
    # and the same check without raising says False
    assert md.gradcheck(fn, *[t(a) for a in arrays], raise_exception=False) is False


def test_report_numbers_are_right():
    x = t([1.0, -2.0, 0.5])
    with pytest.raises(md.GradcheckError) as e:
        md.gradcheck(lambda x: ScaledByTwo()(x), x)
    row = str(e.value).splitlines()[3].split()
    # analytic is 6 w, numeric 3 w: abs error 3 |w| (largest at the largest |w|), relative error 0.5
    assert row[0] == "0" and row[1] == "(3,)"
    w = x.grad / 6  # the analytic gradient the checker got is 6 w
    worst = int(np.argmax(np.abs(w)))
    assert float(row[2]) == pytest.approx(3 * np.abs(w).max(), rel=1e-2)  # printed with 3 digits
    assert float(row[3]) == pytest.approx(0.5, rel=1e-2)
    assert row[4] == f"({worst},)"
    assert float(row[5]) == pytest.approx(6 * w[worst], rel=1e-3)
    assert float(row[6]) == pytest.approx(3 * w[worst], rel=1e-3)
    assert row[7] == "3/3" and row[8] == "WRONG"


def test_weights_do_not_repeat_seed_zero_test_data():
    # inputs drawn from default_rng(0), like most tests': the transpose bug must still show
    a, b = np.random.default_rng(0).standard_normal((3, 3)), np.random.default_rng(0).standard_normal((3, 3))
    with pytest.raises(md.GradcheckError):
        md.gradcheck(lambda a, b: MatMulMissingTranspose()(a, b), t(a), t(b))


def test_gradcheck_error_is_an_assertion_error():
    assert issubclass(md.GradcheckError, AssertionError)


def test_off_by_one_is_caught_at_the_edge_only_partially():
    # the reported count of bad elements helps: an off-by-one gets most elements wrong
    with pytest.raises(md.GradcheckError, match=r"\d+/5"):
        md.gradcheck(lambda x: ShiftOffByOne()(x), t(randn(5)))


def test_no_input_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        md.gradcheck(lambda x: x * 2.0, t(randn(2), grad=False))


def test_input_values_are_restored():
    a = randn(2, 3)
    x = t(a)
    md.gradcheck(lambda x: (x * x).sum(), x)
    np.testing.assert_array_equal(x.data, a)


def test_non_contiguous_input():
    x = md.tensor(randn(3, 4).T, requires_grad=True)  # a transposed (Fortran-order) view
    assert md.gradcheck(lambda x: x @ np.arange(3.0), x)


def test_sum_to_helper_is_used_by_correct_broadcast():
    class GoodAdd(AddForgottenBroadcastSum):
        def backward(self, gy):
            return gy, sum_to(gy, self.shape_b)
    assert md.gradcheck(lambda a, b: GoodAdd()(a, b), t(randn(3, 4)), t(randn(1, 4)))
    assert backend.xp_of(np.zeros(1)) is np


def test_check_layer_and_gradcheck_share_one_engine_and_one_table():
    # the same op and input: the same weights, central differences and row, only the input's label differs
    from minidl.testing import check_layer
    a = randn(2, 3)
    with pytest.raises(md.GradcheckError) as e:
        md.gradcheck(lambda x: FlippedSignTanh()(x), t(a))
    table = str(e.value).splitlines()
    r = check_layer(FlippedSignTanh, inputs=[(a,)], verbose=False)
    lines = [ln.strip() for ln in r.report.splitlines()]
    header = lines.index(table[2].strip())
    assert lines[header + 1].split()[1:] == table[3].split()[1:]
    assert lines[header + 1].split()[0] == "x" and table[3].split()[0] == "0"
    assert "sign flipped" in str(e.value) and "sign flipped" in r.report  # the same diagnosis in both


def test_a_nan_gradient_is_wrong_not_silently_passed():
    class NaNBackward(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy * np.nan

    with pytest.raises(md.GradcheckError, match="NaN"):
        md.gradcheck(lambda x: NaNBackward()(x), t(randn(3)))
