"""VGG: configurations A, B, D, E with and without BatchNorm, torchvision's names."""
import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from minidl.models.vgg import CONFIGS, make_features
from models_testing import cast_float64, compare_with_torchvision, params_and_x

COUNTS = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
          "vgg16_bn": 138_365_992}


def test_parameter_count_vgg16():
    assert models.vgg16().num_parameters() == COUNTS["vgg16"]


@pytest.mark.slow  # ~0.5 GB each to build
@pytest.mark.parametrize("name", ["vgg11", "vgg13", "vgg19", "vgg16_bn"])
def test_parameter_counts_more(name):
    assert models.get_model(name).num_parameters() == COUNTS[name]


@pytest.mark.parametrize("config, convs", [("A", 8), ("B", 10), ("D", 13), ("E", 16)])
def test_configurations(config, convs):
    f = make_features(CONFIGS[config])
    conv = [m for m in f if isinstance(m, nn.Conv2d)]
    assert len(conv) == convs  # + 3 FC layers = 11, 13, 16, 19 weight layers
    assert all(m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1) for m in conv)
    assert sum(isinstance(m, nn.MaxPool2d) for m in f) == 5


def test_torchvision_keys():
    a = make_features(CONFIGS["A"])
    assert [k for k in a.state_dict() if k.endswith("weight")] == \
        [f"{i}.weight" for i in (0, 3, 6, 8, 11, 13, 16, 18)]
    bn = make_features(CONFIGS["A"], batch_norm=True)
    keys = list(bn.state_dict())
    assert keys[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked"]
    assert [k for k in keys if k.endswith("weight") and f"{k[:-7]}.running_mean" not in keys] == \
        [f"{i}.weight" for i in (0, 4, 8, 11, 15, 18, 22, 25)]  # conv, bn, relu (+ pool): 29 layers
    assert len(bn) == 29


def test_bn_alias_and_forward_small_input():
    md.manual_seed(0)
    net = models.vgg11_bn(num_classes=10)
    assert net.num_parameters() == COUNTS["vgg11"] + 2 * (64 + 128 + 2 * 256 + 4 * 512) - 4096 * 990 - 990
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert list(net.state_dict())[-6:] == ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight",
                                           "classifier.3.bias", "classifier.6.weight", "classifier.6.bias"]
    net.eval()
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with md.no_grad():
        assert net(x).shape == (1, 10)  # 32 -> 1 after five pools; adaptive pool repeats it to 7x7


def test_gradcheck_vgg_stage():
    """Two 3x3 convs (+BN, ReLU) then a 2x2 pool, built by the same make_features."""
    md.manual_seed(0)
    block = cast_float64(make_features([3, 2, "M"], batch_norm=True, in_channels=2))
    fn, inputs = params_and_x(block, (2, 2, 4, 4))
    assert md.gradcheck(fn, *inputs)


def test_same_logits_as_torchvision():
    torchvision = pytest.importorskip("torchvision", reason="needs torchvision: pip install -e '.[torchvision]'")
    import torch
    torch.manual_seed(0)
    compare_with_torchvision(models.vgg11(), torchvision.models.vgg11(weights=None), (2, 3, 32, 32))
    torch.manual_seed(0)
    tv = torchvision.models.vgg11_bn(weights=None)
    ours = models.vgg11_bn()
    assert set(ours.state_dict()) == set(tv.state_dict())
