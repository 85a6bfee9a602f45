"""Network in Network: mlpconv blocks (k x k conv + two 1x1 convs), global average pooling."""
import numpy as np

import minidl as md
from minidl import models, nn
from minidl.models.nin import mlpconv
from models_testing import cast_float64, params_and_x


def conv_params(cin, cout, k):
    return cout * cin * k * k + cout


def test_parameter_count():
    expected = (conv_params(3, 96, 11) + 2 * conv_params(96, 96, 1)
                + conv_params(96, 256, 5) + 2 * conv_params(256, 256, 1)
                + conv_params(256, 384, 3) + 2 * conv_params(384, 384, 1)
                + conv_params(384, 1024, 3) + conv_params(1024, 1024, 1) + conv_params(1024, 1000, 1))
    net = models.nin()
    assert net.num_parameters() == expected == 7_595_176
    assert not any(isinstance(m, nn.Linear) for m in net.modules())  # no FC layers


def test_sizes_at_224():
    s = models.summary(models.nin(), (3, 224, 224))
    assert [s.row(n).output_shape[1:] for n in ("block1.0", "pool1", "pool2", "pool3", "block4.4", "avgpool")] == \
        [(96, 54, 54), (96, 27, 27), (256, 13, 13), (384, 6, 6), (1000, 6, 6), (1000, 1, 1)]


def test_forward_small_input():
    md.manual_seed(0)
    net = models.nin(num_classes=10)
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    y = net(x)
    assert y.shape == (2, 10)
    y.sum().backward()
    assert net.block1[0].weight.grad is not None


def test_gradcheck_mlpconv():
    md.manual_seed(0)
    block = cast_float64(mlpconv(2, 3, 3, padding=1, mid_channels=2))
    fn, inputs = params_and_x(block, (1, 2, 4, 4))
    assert md.gradcheck(fn, *inputs)
