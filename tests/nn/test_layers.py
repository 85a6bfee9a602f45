"""Layer classes: PyTorch's default initialisations, output shapes, train/eval behaviour, BatchNorm buffers."""
import math

import numpy as np
import pytest

import minidl as md
from minidl import nn


def _check_uniform(a, bound):
    """a ~ U(-bound, bound): inside the bound, mean ~ 0, std ~ bound / sqrt(3)."""
    assert a.dtype == np.float32
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.9 * bound  # spread over the whole interval, not a narrower one
    n = a.size
    assert abs(a.mean()) < 4 * bound / math.sqrt(3 * n)
    assert abs(a.std() / (bound / math.sqrt(3)) - 1) < 0.05


def test_linear_init_statistics():
    md.manual_seed(0)
    fc = nn.Linear(300, 4000)
    assert fc.weight.shape == (4000, 300) and fc.bias.shape == (4000,)
    _check_uniform(fc.weight.data, 1 / math.sqrt(300))
    _check_uniform(fc.bias.data, 1 / math.sqrt(300))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_init_statistics(groups):
    # PyTorch: kaiming_uniform(a=sqrt(5)) gives bound 1/sqrt(fan_in), fan_in = in/groups * kh * kw
    md.manual_seed(0)
    conv = nn.Conv2d(48, 256, 5, groups=groups)
    fan_in = 48 // groups * 25
    assert conv.weight.shape == (256, 48 // groups, 5, 5) and conv.bias.shape == (256,)
    _check_uniform(conv.weight.data, 1 / math.sqrt(fan_in))
    assert np.abs(conv.bias.data).max() <= 1 / math.sqrt(fan_in)


def test_init_statistics_agree_with_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    torch.manual_seed(0)
    md.manual_seed(0)
    ours, theirs = nn.Conv2d(96, 256, 5, padding=2, groups=2), torch.nn.Conv2d(96, 256, 5, padding=2, groups=2)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    for a, b in ((ours.weight.data, theirs.weight), (ours.bias.data, theirs.bias)):
        b = b.detach().numpy()
        assert abs(np.abs(a).max() - np.abs(b).max()) < 0.02 * np.abs(b).max()
        assert abs(a.std() / b.std() - 1) < 0.1


def test_conv2d_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"Conv2d: in_channels \(6\) and out_channels \(8\) .* groups \(4\)"):
        nn.Conv2d(6, 8, 3, groups=4)


@pytest.mark.parametrize("layer,in_shape,out_shape", [
    (lambda: nn.Conv2d(3, 8, 5, stride=2, padding=2), (2, 3, 15, 15), (2, 8, 8, 8)),
    (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), (1, 4, 7, 6), (1, 6, 7, 6)),
    (lambda: nn.Linear(12, 5), (3, 12), (3, 5)),
    (lambda: nn.MaxPool2d(3, 2), (2, 4, 13, 13), (2, 4, 6, 6)),
    (lambda: nn.MaxPool2d(3, 2, ceil_mode=True), (2, 4, 14, 14), (2, 4, 7, 7)),
    (lambda: nn.MaxPool2d(2), (1, 1, 7, 8), (1, 1, 3, 4)),          # stride defaults to the kernel
    (lambda: nn.AvgPool2d(3, 1, 1), (2, 3, 5, 4), (2, 3, 5, 4)),
    (lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 3, 5, 5), (2, 3, 3, 3)),
    (lambda: nn.AdaptiveAvgPool2d(1), (2, 5, 7, 7), (2, 5, 1, 1)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 5, 6, 6), (2, 5, 2, 3)),
    (lambda: nn.LocalResponseNorm(5), (2, 8, 3, 3), (2, 8, 3, 3)),
    (lambda: nn.BatchNorm2d(4), (3, 4, 2, 2), (3, 4, 2, 2)),
    (lambda: nn.ReLU(), (2, 3), (2, 3)),
    (lambda: nn.Dropout(0.5), (4, 6), (4, 6)),
    (lambda: nn.Flatten(), (2, 3, 4, 5), (2, 60)),
])
def test_output_shapes_and_dtype(layer, in_shape, out_shape):
    md.manual_seed(0)
    x = md.tensor(np.random.default_rng(0).standard_normal(in_shape).astype(np.float32), requires_grad=True)
    y = layer()(x)
    assert y.shape == out_shape and y.dtype == np.float32
    y.sum().backward()
    assert x.grad.shape == in_shape and x.grad.dtype == np.float32


def test_lrn_layer_is_the_paper_formula():
    x = np.random.default_rng(0).standard_normal((1, 7, 2, 2))
    y = nn.LocalResponseNorm(5, alpha=1e-1, beta=0.75, k=2.0)(md.tensor(x)).numpy()
    sq = np.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window_sum = sum(sq[:, i:i + 7] for i in range(5))
    np.testing.assert_allclose(y, x / (2.0 + 1e-1 * window_sum) ** 0.75, rtol=1e-12)


# ---- Dropout ------------------------------------------------------------------------------------------

def test_dropout_train_and_eval():
    md.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = md.tensor(np.ones((200, 100), np.float32))
    y = drop(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02                      # about 1 - p survive
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # inverted dropout scales the survivors
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    drop.train()
    assert (drop(x).numpy() == 0).any()


def test_dropout_is_repeatable_by_seed():
    x = md.tensor(np.ones((10, 10), np.float32))
    md.manual_seed(3)
    a = nn.Dropout()(x).numpy()
    md.manual_seed(3)
    b = nn.Dropout()(x).numpy()
    np.testing.assert_array_equal(a, b)


# ---- BatchNorm2d ---------------------------------------------------------------------------------------

def test_batchnorm_parameters_buffers_and_state_dict_keys():
    bn = nn.BatchNorm2d(6)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64


def test_batchnorm_train_updates_buffers_eval_does_not():
    bn = nn.BatchNorm2d(3)
    x = md.tensor((np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 2 + 3).astype(np.float32))
    running_mean = bn.running_mean
    bn(x)
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    assert bn.running_mean is running_mean  # updated in place, the buffer object is kept
    expected = 0.19 * x.numpy().mean(axis=(0, 2, 3))  # two steps of momentum 0.1 from zero
    np.testing.assert_allclose(bn.running_mean, expected, rtol=1e-5)
    bn.eval()
    before = (bn.running_mean.copy(), bn.running_var.copy())
    y = bn(x).numpy()
    assert int(bn.num_batches_tracked) == 2
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])
    expected = (x.numpy() - before[0][None, :, None, None]) / np.sqrt(before[1][None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_batchnorm_matches_torch_over_steps_and_loads_its_state():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    rng = np.random.default_rng(1)
    ours, theirs = nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    for step in range(3):
        x = (rng.standard_normal((5, 4, 3, 3)) * (step + 1) + step).astype(np.float32)
        gy = rng.standard_normal(x.shape).astype(np.float32)
        y = ours(md.tensor(x))
        y.backward(gy)
        yt = theirs(torch.tensor(x))
        yt.backward(torch.tensor(gy))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name], value.numpy(), rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-4, atol=1e-5)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(md.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    fresh = nn.BatchNorm2d(4).load_state_dict(theirs.state_dict())
    np.testing.assert_allclose(fresh.running_var, theirs.running_var.numpy())


def test_batchnorm2d_wants_4d_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-D input \(N, C, H, W\), got shape \(5, 3\)"):
        nn.BatchNorm2d(3)(md.tensor(np.ones((5, 3), np.float32)))
    with pytest.raises(ValueError, match=r"batch_norm: input has 2 channels .* running_mean has shape \(3,\)"):
        nn.BatchNorm2d(3)(md.tensor(np.ones((5, 2, 2, 2), np.float32)))


def test_pool_layers_repr():
    assert "kernel_size=3, stride=2" in repr(nn.MaxPool2d(3, 2))
    assert "stride=2" in repr(nn.AvgPool2d(2))


def test_max_and_average_pooling_share_a_base_but_neither_is_the_other():
    mp, ap = nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(3)
    assert not isinstance(ap, nn.MaxPool2d) and not isinstance(mp, nn.AvgPool2d)
    assert type(mp).__mro__[1] is type(ap).__mro__[1]
    assert (ap.kernel_size, ap.stride, ap.padding, ap.ceil_mode) == (3, 3, 0, False)
    assert repr(mp) == "MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)"
    x = md.tensor(np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6))
    np.testing.assert_allclose(ap(x).data[0, 0], [[7.0, 10.0], [25.0, 28.0]])
    # ceil mode: 4 windows per axis, rows -1..1, 1..3, 3..5, 5..7; each one's largest row and column wins
    last = np.array([1, 3, 5, 5])
    np.testing.assert_allclose(mp(x).data[0, 0], 6 * last[:, None] + last[None, :])


def test_conv2d_layer_names_a_bad_kernel_size():
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size must be an int or a pair of ints"):
        nn.Conv2d(1, 2, (3, 3, 3))
