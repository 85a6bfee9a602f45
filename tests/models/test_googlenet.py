"""GoogLeNet: Inception modules, auxiliary heads in training only, the paper and torchvision variants."""
import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from minidl.models._common import BasicConv2d, ConvReLU
from minidl.models.googlenet import Inception, InceptionAux
from models_testing import (cast_float64, compare_with_torchvision, params_and_x, randomize_bn,
                            randomize_bn_torch)


@pytest.mark.parametrize("variant, aux, count", [("paper", False, 6_998_552), ("paper", True, 13_378_280),
                                                 ("torchvision", False, 6_624_904),
                                                 ("torchvision", True, 13_004_888)])
def test_parameter_counts(variant, aux, count):
    assert models.googlenet(aux_logits=aux, variant=variant).num_parameters() == count


def test_twelve_times_fewer_claim():
    ratio = models.alexnet().num_parameters() / models.googlenet(aux_logits=False).num_parameters()
    assert 8.6 < ratio < 8.8  # the slide says 12x; the layer tables give about 8.7x


def test_paper_structure():
    net = models.googlenet()
    assert net.inception3a.branch3[1].conv.kernel_size == (5, 5)  # a true 5x5
    assert net.inception3a.branch3[1].conv.padding == (2, 2)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.aux1.pool, nn.AvgPool2d) and net.aux1.pool.kernel_size == 5 and net.aux1.pool.stride == 3
    assert net.dropout.p == 0.4 and net.aux1.dropout.p == 0.7
    s = models.summary(net, (3, 224, 224), depth=1)
    out = {r.name: r.output_shape[1] for r in s.rows}
    assert [out[f"inception{k}"] for k in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")] == \
        [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert s.row("inception4a").output_shape == (1, 512, 14, 14)
    assert s.row("inception5b").output_shape == (1, 1024, 7, 7)


def test_torchvision_keys():
    keys = set(models.googlenet(variant="torchvision").state_dict())
    for k in ("conv1.conv.weight", "conv1.bn.running_var", "conv3.bn.bias", "inception3a.branch1.conv.weight",
              "inception3a.branch2.1.bn.weight", "inception3a.branch3.1.conv.weight",
              "inception4e.branch4.1.bn.num_batches_tracked", "aux1.conv.conv.weight", "aux1.conv.bn.weight",
              "aux1.fc1.weight", "aux2.fc2.bias", "fc.weight", "fc.bias"):
        assert k in keys, k
    assert not any("bias" in k and ".conv.bias" in k for k in keys)  # convs have no bias before BN
    net = models.googlenet(variant="torchvision")
    assert net.inception3a.branch3[1].conv.weight.shape == (32, 16, 3, 3)  # torchvision's "5x5" is 3x3
    assert len(keys) == 6 * (3 + 9 * 6 + 2) + 2 * 4 + 2  # 59 conv-BN units, 2 aux FC pairs, fc


def test_aux_heads_in_training_only():
    md.manual_seed(0)
    net = models.googlenet(num_classes=7, variant="torchvision")
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    out = net(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 3
    loss = out[0].sum() + 0.3 * (out[1].sum() + out[2].sum())
    loss.backward()
    assert net.aux1.fc2.weight.grad is not None and net.conv1.conv.weight.grad is not None
    net.eval()
    with md.no_grad():
        y = net(x)
    assert isinstance(y, md.Tensor) and y.shape == (2, 7)
    plain = models.googlenet(num_classes=7, variant="torchvision", aux_logits=False)
    assert plain.aux1 is None and not any(k.startswith("aux") for k in plain.state_dict())
    assert isinstance(plain(x), md.Tensor)  # training mode, but no heads


def test_paper_variant_eval_on_small_input():
    md.manual_seed(0)
    net = models.googlenet(num_classes=5).eval()
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
    with md.no_grad():
        assert net(x).shape == (1, 5)


def test_paper_aux_shapes_at_224():
    s = models.summary(models.googlenet(), (3, 224, 224))
    assert s.output_shapes == [(1, 1000)] * 3
    assert s.row("aux1.pool").output_shape == (1, 512, 4, 4)
    assert s.row("aux2.conv.conv").output_shape == (1, 128, 4, 4)


@pytest.mark.slow
def test_paper_train_forward_224():
    md.manual_seed(0)
    net = models.googlenet(num_classes=10)
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    assert [o.shape for o in net(x)] == [(1, 10)] * 3


@pytest.mark.parametrize("unit, k5", [(ConvReLU, 5), (BasicConv2d, 3)], ids=["paper", "torchvision"])
def test_gradcheck_inception_module(unit, k5):
    md.manual_seed(0)
    block = cast_float64(Inception(3, 1, 2, 2, 1, 1, 1, unit=unit, kernel5=k5))
    if unit is BasicConv2d:
        randomize_bn(block)
    fn, inputs = params_and_x(block, (2, 3, 3, 3))
    assert fn(*inputs).shape == (2, 5, 3, 3)
    assert md.gradcheck(fn, *inputs)


def test_gradcheck_aux_head():
    md.manual_seed(0)
    aux = InceptionAux(2, 3, unit=ConvReLU).eval()  # eval: dropout off, so the function is deterministic
    aux.fc1 = nn.Linear(128, 4)
    aux.fc2 = nn.Linear(4, 3)
    cast_float64(aux)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((1, 2, 5, 5)), requires_grad=True, dtype="float64")
    assert aux(x).shape == (1, 3)
    assert md.gradcheck(lambda x, w, b: aux(x), x, aux.fc1.weight, aux.conv.conv.bias)


def test_inception_against_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    md.manual_seed(0)
    ours = randomize_bn(Inception(6, 2, 3, 4, 2, 3, 2, unit=BasicConv2d, kernel5=3)).eval()

    def unit(cin, cout, k):
        return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                                   torch.nn.BatchNorm2d(cout, eps=0.001), torch.nn.ReLU())

    class Ref(torch.nn.Module):  # torchvision's Inception, written out
        def __init__(self):
            super().__init__()
            self.branch1 = unit(6, 2, 1)
            self.branch2 = torch.nn.Sequential(unit(6, 3, 1), unit(3, 4, 3))
            self.branch3 = torch.nn.Sequential(unit(6, 2, 1), unit(2, 3, 3))
            self.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1, ceil_mode=True), unit(6, 2, 1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    ref = Ref().eval()
    names = {"conv": "0", "bn": "1"}
    state = {}
    for k, v in ours.state_dict().items():
        parts = k.split(".")
        parts[-2] = names[parts[-2]]
        state[".".join(parts)] = torch.from_numpy(np.array(v))
    ref.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((2, 6, 7, 7)).astype(np.float32)
    with md.no_grad():
        y = ours(md.tensor(x)).numpy()
    with torch.no_grad():
        r = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, r, rtol=1e-4, atol=1e-5)


def test_same_logits_as_torchvision():
    torchvision = pytest.importorskip("torchvision", reason="needs torchvision: pip install -e '.[torchvision]'")
    import torch
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=False, init_weights=True)
    randomize_bn_torch(tv)
    compare_with_torchvision(models.googlenet(variant="torchvision"), tv, (2, 3, 224, 224))
    # transform_input: the same rescaling of the three channels on both sides
    tv.transform_input = True
    compare_with_torchvision(models.googlenet(variant="torchvision", transform_input=True), tv, (1, 3, 96, 96))

