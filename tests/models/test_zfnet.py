"""ZFNet: 7x7/2 first layer, stride-2 conv2, the sizes of the paper's Figure 3."""
import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from models_testing import cast_float64, params_and_x


@pytest.fixture(scope="module")
def net():
    md.manual_seed(0)
    return models.zfnet()


def test_parameter_count(net):
    assert net.num_parameters() == 62_357_608


def test_layers(net):
    f = net.features
    assert f.conv1.weight.shape == (96, 3, 7, 7) and f.conv1.stride == (2, 2)
    assert f.conv2.weight.shape == (256, 96, 5, 5) and f.conv2.stride == (2, 2)
    assert all(m.groups == 1 for m in net.modules() if isinstance(m, nn.Conv2d))  # no towers
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.modules()) == 2


def test_figure3_sizes(net):
    s = models.summary(net, (3, 224, 224))
    sizes = [s.row(f"features.{n}").output_shape[2] for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")]
    assert sizes == [110, 55, 26, 13, 13, 6]


@pytest.mark.slow
def test_forward_224(net):
    net.eval()
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    with md.no_grad():
        assert net(x).shape == (1, 1000)


def test_gradcheck_first_stage():
    """conv1 stage in miniature: 7x7/2 pad 1, ReLU, LRN, ceil-mode 3x3/2 max-pool."""
    md.manual_seed(0)
    block = cast_float64(nn.Sequential(nn.Conv2d(1, 3, 7, stride=2, padding=1), nn.ReLU(),
                                       nn.LocalResponseNorm(3, alpha=1e-1, beta=0.75, k=2.0),
                                       nn.MaxPool2d(3, stride=2, ceil_mode=True)))
    fn, inputs = params_and_x(block, (1, 1, 12, 12))
    assert fn(*inputs).shape == (1, 3, 2, 2)  # conv: (12 + 2 - 7) // 2 + 1 = 4; pool rounds up: 2, not 1
    assert md.gradcheck(fn, *inputs)
