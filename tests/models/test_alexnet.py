"""AlexNet: the paper's two-tower net and torchvision's variant."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from models_testing import cast_float64, compare_with_torchvision, params_and_x

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def paper():
    md.manual_seed(0)
    return models.alexnet()


@pytest.fixture(scope="module")
def tv():
    md.manual_seed(0)
    return models.alexnet(variant="torchvision")


def test_parameter_counts(paper, tv):
    assert paper.num_parameters() == 60_965_224
    assert tv.num_parameters() == 61_100_840


def test_paper_layers(paper):
    conv = {name: m for name, m in paper.features.named_modules() if isinstance(m, nn.Conv2d)}
    assert [conv[k].groups for k in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert conv["conv1"].weight.shape == (96, 3, 11, 11) and conv["conv1"].stride == (4, 4)
    assert conv["conv2"].weight.shape == (256, 48, 5, 5)   # each tower sees half the channels
    lrn = [m for m in paper.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrn] == [(5, 1e-4, 0.75, 2.0)] * 2
    assert [m.p for m in paper.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert [(m.kernel_size, m.stride) for m in paper.modules() if isinstance(m, nn.MaxPool2d)] == [(3, 2)] * 3


def test_torchvision_keys(tv):
    expected = [f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")]
    expected += [f"classifier.{i}.{p}" for i in (1, 4, 6) for p in ("weight", "bias")]
    assert list(tv.state_dict()) == expected
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())


def test_paper_forward_227(paper):
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32))
    paper.eval()
    with md.no_grad():
        y = paper(x)
    assert y.shape == (1, 1000)
    assert np.isfinite(y.numpy()).all()


def test_torchvision_variant_small_input():
    md.manual_seed(0)
    net = models.alexnet(num_classes=10, variant="torchvision")
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    y = net(x)  # adaptive 6x6 pool: any input from 63x63 up runs
    assert y.shape == (2, 10)
    y.sum().backward()
    assert net.features[0].weight.grad.shape == (64, 3, 11, 11)


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        models.alexnet(variant="caffe")


def test_models_import_nothing_from_distributed():
    # the two-tower model lives in minidl.distributed.towers; models.alexnet(towers=...) points there
    code = ("import sys, minidl.models as m; m.get_model('alexnet', width=1/16); "
            "assert not [k for k in sys.modules if k.startswith('minidl.distributed')], 'imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert out.returncode == 0, out.stderr
    with pytest.raises(ValueError, match="minidl.distributed.towers.two_tower_alexnet"):
        models.alexnet(towers="mpi")


def test_gradcheck_two_tower_block():
    """AlexNet's conv2 stage in miniature: grouped conv (two towers), ReLU, paper LRN, overlapping pool."""
    md.manual_seed(0)
    block = cast_float64(nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(),
        nn.LocalResponseNorm(3, alpha=1e-1, beta=0.75, k=2.0),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(4, 2, 1),
    ))
    assert block[0].weight.shape == (4, 2, 3, 3)
    fn, inputs = params_and_x(block, (1, 4, 5, 5))
    assert md.gradcheck(fn, *inputs)


def test_same_logits_as_torchvision():
    torchvision = pytest.importorskip("torchvision", reason="needs torchvision: pip install -e '.[torchvision]'")
    import torch
    torch.manual_seed(0)
    compare_with_torchvision(models.alexnet(variant="torchvision"), torchvision.models.alexnet(weights=None),
                             (2, 3, 224, 224))
