"""check_layer: passes correct layers, and fails each classic mistake naming the input that is wrong."""
import numpy as np
import pytest

import minidl as md
from minidl import functional as F, nn
from minidl.testing import check_layer, LayerCheckError, diagnose


# ---- small layers written the way a student would, each in a correct and a broken version ----------

class ReLU(md.Function):
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


class ReLUWrongSign(ReLU):
    def backward(self, gy):
        return -gy * self.mask


class Linear(md.Function):
    """y = x W^T, W (out, in)."""
    transpose_bug = False

    def forward(self, x, w):
        self.x, self.w = x, w
        return x @ w.T

    def backward(self, gy):
        gx = gy @ self.w
        gw = self.x.T @ gy if self.transpose_bug else gy.T @ self.x  # bug: (in, out) instead of (out, in)
        return gx, gw


class LinearMissingTranspose(Linear):
    transpose_bug = True


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def im2col(x, k, s, p):
    N, C, H, W = x.shape
    oh, ow = _out(H, k, s, p), _out(W, k, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    col = np.zeros((N, C, k, k, oh, ow), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            col[:, :, i, j] = xp[:, :, i:i + s * oh:s, j:j + s * ow:s]
    return col


def col2im(col, x_shape, k, s, p, accumulate=True):
    N, C, H, W = x_shape
    oh, ow = col.shape[4:]
    xp = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=col.dtype)
    for i in range(k):
        for j in range(k):
            if accumulate:
                xp[:, :, i:i + s * oh:s, j:j + s * ow:s] += col[:, :, i, j]
            else:  # the classic bug: overlapping windows overwrite instead of summing
                xp[:, :, i:i + s * oh:s, j:j + s * ow:s] = col[:, :, i, j]
    return xp[:, :, p:p + H, p:p + W]


class Conv(md.Function):
    stride, pad, accumulate = 1, 1, True

    def forward(self, x, w):
        K, C, k, _ = w.shape
        self.x_shape, self.w = x.shape, w
        self.col = im2col(x, k, self.stride, self.pad)           # (N, C, k, k, oh, ow)
        return np.einsum("ncijyx,kcij->nkyx", self.col, w)

    def backward(self, gy):
        k = self.w.shape[2]
        gw = np.einsum("nkyx,ncijyx->kcij", gy, self.col)
        gcol = np.einsum("nkyx,kcij->ncijyx", gy, self.w)
        return col2im(gcol, self.x_shape, k, self.stride, self.pad, self.accumulate), gw


class ConvStride2(Conv):
    stride = 2


class ConvNoAccumulate(ConvStride2):
    accumulate = False


def conv_reference(x, w, stride, pad):
    x, w = x.data, w.data
    N, C, H, W = x.shape
    K, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = _out(H, k, stride, pad), _out(W, k, stride, pad)
    y = np.zeros((N, K, oh, ow))
    for a in range(oh):
        for b in range(ow):
            patch = xp[:, :, a * stride:a * stride + k, b * stride:b * stride + k]
            y[:, :, a, b] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y


class MaxPool2x2(md.Function):
    """2x2 stride-2 max pooling that records its switches (flat index into the 2x2 window)."""
    off_by_one = False

    def forward(self, x):
        N, C, H, W = x.shape
        win = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4)
        self.switch = win.argmax(axis=-1)
        if self.off_by_one:
            self.switch = (self.switch + 1) % 4
        self.shape = x.shape
        return win.max(axis=-1)

    def backward(self, gy):
        N, C, H, W = self.shape
        gwin = np.zeros((N, C, H // 2, W // 2, 4), dtype=gy.dtype)
        np.put_along_axis(gwin, self.switch[..., None], gy[..., None], axis=-1)
        return gwin.reshape(N, C, H // 2, W // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(self.shape)


class MaxPoolOffByOne(MaxPool2x2):
    off_by_one = True


def pool_reference(x):
    N, C, H, W = x.shape
    return x.data.reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


# ---- correct layers pass ------------------------------------------------------------------------

def test_correct_relu_passes(capsys):
    r = check_layer(ReLU, reference=F.relu, shapes=[(3, 4), (2, 3, 5, 5)])
    assert r and r.passed and r.failures == []
    out = capsys.readouterr().out
    assert "PASS" in out and "case 2" in out


def test_correct_two_input_layer_passes():
    assert check_layer(Linear, reference=lambda x, w: x @ w.T, shapes=[((4, 5), (3, 5)), ((2, 6), (6, 6))],
                       verbose=False)


def test_correct_conv_with_overlapping_windows_passes():
    for cls in (Conv, ConvStride2):
        r = check_layer(cls, reference=lambda x, w, s=cls.stride: conv_reference(x, w, s, 1),
                        shapes=[((2, 2, 7, 7), (3, 2, 3, 3))], verbose=False)
        assert r, r.report


def test_correct_pool_passes():
    assert check_layer(MaxPool2x2, reference=pool_reference, shapes=[(2, 3, 4, 6)], verbose=False)


def test_module_parameters_are_checked_and_restored():
    md.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    r = check_layer(net, shapes=[(5, 4)], verbose=False)
    assert r
    names = [g.name for g in r.cases[0].gradients]
    assert names == ["x", "0.weight", "0.bias", "2.weight", "2.bias"]
    for k, v in net.state_dict().items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])


def test_module_buffers_are_restored():
    # checking a BatchNorm2d runs its training forward dozens of times: its running statistics and
    # counter must be as they were afterwards, or the checked layer evaluates with garbage
    md.manual_seed(0)
    bn = nn.BatchNorm2d(2)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    assert check_layer(bn, shapes=[(2, 2, 3, 3)], verbose=False)
    for k, v in bn.state_dict().items():
        assert v.dtype == before[k].dtype and np.array_equal(v, before[k]), k


# ---- each classic mistake fails, naming the input and with a hint ---------------------------------

def test_wrong_sign_is_caught():
    r = check_layer(ReLUWrongSign, reference=F.relu, shapes=[(3, 4)], verbose=False)
    assert not r
    assert r.failures == [(1, "x")]
    assert r.cases[0].forward_ok  # the forward is right; only the gradient is wrong
    assert "sign" in r.report and "WRONG" in r.report


def test_missing_transpose_is_caught_on_the_weight():
    # square weight: no shape error, the numbers alone must show it
    r = check_layer(LinearMissingTranspose, shapes=[((4, 5), (5, 5))], verbose=False)
    assert not r
    assert r.failures == [(1, "w")]
    assert "transpose" in r.report
    # non-square weight: backward gives the wrong shape, reported as such
    r = check_layer(LinearMissingTranspose, shapes=[((4, 5), (3, 5))], verbose=False)
    assert r.failures == [(1, "w")] and "shape" in r.report


def test_forgotten_accumulation_in_col2im_is_caught():
    r = check_layer(ConvNoAccumulate, reference=lambda x, w: conv_reference(x, w, 2, 1),
                    shapes=[((2, 2, 7, 7), (3, 2, 3, 3))], verbose=False)
    assert not r
    assert r.failures == [(1, "x")]  # the weight's gradient does not use col2im
    text = r.report
    # stride 2, kernel 3, pad 1: windows overlap on input rows and columns 1, 3, 5 only
    x_row, clean_row = "  . x . x . x .", "  x x x x x x x"
    lines = [ln.strip() for ln in text.splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("wrong positions"))
    assert lines[start + 1:start + 8] == [(clean_row if h % 2 else x_row).strip() for h in range(7)]
    assert "overlapping" in text


def test_off_by_one_pool_switch_is_caught():
    r = check_layer(MaxPoolOffByOne, reference=pool_reference, shapes=[(2, 3, 4, 6)], verbose=False)
    assert not r
    assert r.failures == [(1, "x")]
    assert "off by one" in r.report


def test_wrong_forward_is_reported_with_the_worst_value():
    r = check_layer(lambda x: F.relu(x) * 1.01, reference=F.relu, shapes=[(3, 4)], verbose=False, name="scaled")
    assert not r
    assert (1, "forward") in r.failures
    assert "check_layer(scaled): FAIL" in r.report and "reference" in r.report


def test_exceptions_are_reported_not_raised():
    class Broken(md.Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            raise RuntimeError("not written yet")

    r = check_layer(Broken, shapes=[(2, 2)], verbose=False)
    assert not r and "not written yet" in r.report and "backward raised" in r.report


def test_raise_on_failure():
    with pytest.raises(LayerCheckError, match="sign"):
        check_layer(ReLUWrongSign, shapes=[(3, 4)], verbose=False, raise_on_failure=True)


def test_integer_inputs_pass_through():
    labels = np.array([0, 2, 1])
    r = check_layer(lambda z, t: F.cross_entropy(z, t), shapes=[((3, 4), labels)], verbose=False)
    assert r and [g.name for g in r.cases[0].gradients] == ["z"]


def test_diagnose_constant_factor():
    n = np.random.default_rng(0).standard_normal((3, 3))
    assert "0.5 times" in diagnose(0.5 * n, n)
