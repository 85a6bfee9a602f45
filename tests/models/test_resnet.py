"""ResNet: basic and bottleneck blocks, plain baselines, zero-init, CIFAR nets with option-A shortcuts."""
import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from minidl.models.resnet import BasicBlock, Bottleneck, ShortcutA
from models_testing import (cast_float64, compare_with_torchvision, params_and_x, randomize_bn,
                            randomize_bn_torch)

COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
          "resnet101": 44_549_160, "resnet152": 60_192_808}
CIFAR = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts(name):
    assert models.get_model(name).num_parameters() == COUNTS[name]


@pytest.mark.parametrize("depth", list(CIFAR))
def test_cifar_parameter_counts(depth):
    assert models.resnet_cifar(depth).num_parameters() == CIFAR[depth]
    assert models.plain_cifar(depth).num_parameters() == CIFAR[depth]  # option A adds no parameters


def test_plain_nets_have_no_shortcuts():
    r18, p18 = models.resnet18(), models.plain18()
    downsample = sum(v.size for k, v in r18.state_dict().items() if "downsample" in k and "weight" in k
                     or "downsample.1.bias" in k)
    assert p18.num_parameters() == r18.num_parameters() - downsample
    assert not any("downsample" in k for k in p18.state_dict())
    assert set(p18.state_dict()) < set(r18.state_dict())
    assert models.plain34().num_parameters() < models.resnet34().num_parameters()


def test_torchvision_keys_and_strides():
    keys = list(models.resnet18().state_dict())
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert "layer1.0.downsample.0.weight" not in keys  # 64 -> 64, stride 1: identity
    assert "layer2.0.downsample.0.weight" in keys and "layer2.0.downsample.1.running_var" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    r50 = models.resnet50()
    assert "layer1.0.downsample.0.weight" in r50.state_dict()  # 64 -> 256
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)  # stride on the 3x3
    assert r50.layer4[2].conv3.weight.shape == (2048, 512, 1, 1)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual(name):
    net = models.get_model(name, zero_init_residual=True)
    last = [b.bn3 if isinstance(b, Bottleneck) else b.bn2 for b in net.modules() if isinstance(b, (BasicBlock, Bottleneck))]
    assert last and all(np.all(bn.weight.data == 0) for bn in last)
    assert np.all(net.layer1[0].bn1.weight.data == 1)


def test_zero_init_block_is_the_identity():
    md.manual_seed(0)
    block = BasicBlock(4, 4).eval()
    block.bn2.weight.data[:] = 0
    x = np.abs(np.random.default_rng(0).standard_normal((2, 4, 5, 5))).astype(np.float32)
    with md.no_grad():
        np.testing.assert_allclose(block(md.tensor(x)).numpy(), x, rtol=1e-6)


def test_forward_small_inputs():
    md.manual_seed(0)
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    r18 = models.resnet18(num_classes=10)
    y = r18(x)
    assert y.shape == (2, 10)
    y.sum().backward()
    assert r18.layer2[0].downsample[0].weight.grad.shape == (128, 64, 1, 1)
    with md.no_grad():
        assert models.plain18(num_classes=10).eval()(x).shape == (2, 10)
        assert models.resnet50(num_classes=10).eval()(x).shape == (2, 10)


def test_cifar_net():
    md.manual_seed(0)
    net = models.resnet_cifar(20)
    s = models.summary(net, (3, 32, 32), depth=1)
    assert [s.row(n).output_shape[1:] for n in ("layer1", "layer2", "layer3")] == \
        [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert isinstance(net.layer2[0].downsample, ShortcutA) and net.layer2[1].downsample is None
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert net(x).shape == (2, 10)
    assert models.plain_cifar(20)(x).shape == (2, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.resnet_cifar(21)


def test_option_a_shortcut_values():
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6))
    y = ShortcutA(4, 8, 2)(md.tensor(x)).numpy()
    assert y.shape == (2, 8, 3, 3)
    np.testing.assert_array_equal(y[:, 2:6], x[:, :, ::2, ::2])  # the input's channels in the middle
    assert not y[:, :2].any() and not y[:, 6:].any()                 # zeros around them


def test_gradcheck_basic_block_with_projection():
    md.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(2, 3, 1, stride=2, bias=False), nn.BatchNorm2d(3))
    block = randomize_bn(cast_float64(BasicBlock(2, 3, stride=2, downsample=down)))
    fn, inputs = params_and_x(block, (2, 2, 4, 4))
    assert md.gradcheck(fn, *inputs)


def test_gradcheck_bottleneck():
    md.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False), nn.BatchNorm2d(4))
    block = randomize_bn(cast_float64(Bottleneck(3, 1, stride=2, downsample=down)))
    fn, inputs = params_and_x(block, (2, 3, 4, 4))
    assert md.gradcheck(fn, *inputs)


def test_gradcheck_option_a_block():
    md.manual_seed(0)
    block = randomize_bn(cast_float64(BasicBlock(2, 4, stride=2, downsample=ShortcutA(2, 4, 2))))
    fn, inputs = params_and_x(block, (2, 2, 4, 4))
    assert md.gradcheck(fn, inputs[0])            # the shortcut's slicing and zero channels
    assert md.gradcheck(fn, *inputs)


def test_basic_block_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    md.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False), nn.BatchNorm2d(4))
    ours = randomize_bn(BasicBlock(3, 4, stride=2, downsample=down))

    class Ref(torch.nn.Module):  # torchvision's BasicBlock, written out
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3, 2, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(4)
            self.conv2 = torch.nn.Conv2d(4, 4, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(4)
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, 2, bias=False), torch.nn.BatchNorm2d(4))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))

    ref = Ref()
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for train in (False, True):
        ours.train(train)
        ref.train(train)
        y = ours(md.tensor(x)).numpy()
        with torch.no_grad():
            r = ref(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.bn1.running_mean, ref.bn1.running_mean.numpy(), rtol=1e-5, atol=1e-6)


def test_same_logits_as_torchvision():
    torchvision = pytest.importorskip("torchvision", reason="needs torchvision: pip install -e '.[torchvision]'")
    import torch
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    randomize_bn_torch(tv)
    compare_with_torchvision(models.resnet18(), tv, (2, 3, 64, 64))
    for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
        assert set(models.get_model(name).state_dict()) == set(getattr(torchvision.models, name)().state_dict())
