"""Weights in and out: state-dict checks on real models, .npz save/load, torch .pth loading."""
import sys

import numpy as np
import pytest

import minidl as md
from minidl import models


@pytest.fixture
def net():
    md.manual_seed(0)
    return models.resnet_cifar(20)


def test_missing_key_is_named(net):
    state = net.state_dict()
    del state["layer2.0.conv1.weight"]
    with pytest.raises(KeyError, match=r"missing keys: layer2\.0\.conv1\.weight"):
        net.load_state_dict(state)


def test_extra_key_is_named(net):
    state = net.state_dict()
    state["layer9.0.conv1.weight"] = np.zeros(3, np.float32)
    with pytest.raises(KeyError, match=r"unexpected keys: layer9\.0\.conv1\.weight"):
        net.load_state_dict(state)


def test_wrong_shape_is_named_and_nothing_changes(net):
    state = net.state_dict()
    before = net.fc.weight.data.copy()
    state["fc.weight"] = np.ones((10, 63), np.float32)
    state["conv1.weight"] = state["conv1.weight"] + 1
    with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(10, 63\).*\(10, 64\)"):
        net.load_state_dict(state)
    np.testing.assert_array_equal(net.fc.weight.data, before)


def test_num_batches_tracked_may_be_absent_or_present(net):
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    net.load_state_dict(state)  # torchvision files older than BN's counter lack it
    state["bn1.num_batches_tracked"] = np.array(5)
    net.load_state_dict(state)


def test_npz_round_trip_gives_the_same_logits(net, tmp_path):
    x = md.tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    net.train()
    net(x)  # move the BN running statistics away from their initial values
    net.eval()
    with md.no_grad():
        y = net(x).numpy()
    path = tmp_path / "resnet20.npz"
    net.save(path)
    md.manual_seed(1)
    other = models.resnet_cifar(20).eval()
    with md.no_grad():
        assert not np.allclose(other(x).numpy(), y)
        other.load(path)
        np.testing.assert_array_equal(other(x).numpy(), y)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_npz_of_a_torchvision_compatible_model(tmp_path):
    md.manual_seed(0)
    a = models.googlenet(num_classes=5, variant="torchvision", aux_logits=False)
    a.save(tmp_path / "g.npz")
    md.manual_seed(1)
    b = models.googlenet(num_classes=5, variant="torchvision", aux_logits=False).load(tmp_path / "g.npz")
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_load_torchvision_pth(net, tmp_path):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    md.manual_seed(3)
    src = models.resnet_cifar(20)
    state = {k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    models.load_torchvision(net, path)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v)
    # a checkpoint dict wrapping the weights, saved from DataParallel ("module." prefixes)
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    models.load_torchvision(models.resnet_cifar(20), path)
    del state["fc.bias"]
    torch.save(state, path)
    with pytest.raises(KeyError, match="fc.bias"):
        models.load_torchvision(net, path)


def test_load_state_dict_accepts_torch_tensors(net):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    state = {k: torch.from_numpy(np.array(v)) + 1 for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    np.testing.assert_array_equal(net.conv1.weight.data, state["conv1.weight"].numpy())


def test_load_torchvision_needs_no_torch(net, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="writing the .pth needs PyTorch: pip install -e '.[reference]'")
    md.manual_seed(3)
    src = models.resnet_cifar(20)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}, tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    models.load_torchvision(net, tmp_path / "w.pth")
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v)


# ---- every torchvision architecture: a torch.save'd file read without PyTorch, same logits --------

FAST = ["alexnet_torchvision", "vgg11_bn", "googlenet_torchvision", "resnet18", "resnet50"]
SLOW = ["vgg11", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet34", "resnet101", "resnet152"]

# Runs in a fresh interpreter where `import torch` fails, so nothing can fall back on PyTorch.
WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None
try:
    import torch
    raise SystemExit("torch is importable")
except ImportError:
    pass
import numpy as np
import minidl as md
from minidl import models
for name, pth, x, out in json.loads(sys.argv[1]):
    kwargs = {"transform_input": True} if name.startswith("googlenet") else {}
    net = models.load_torchvision(models.get_model(name, **kwargs), pth).eval()
    with md.no_grad():
        np.save(out, net(md.tensor(np.load(x))).numpy())
print("torch" in sys.modules and sys.modules["torch"] is None)
"""


def _same_logits_without_torch(names, tmp_path):
    import json
    import subprocess
    torch = pytest.importorskip("torch", reason="the reference nets need PyTorch: pip install -e '.[reference]'")
    import torch_reference
    jobs, refs = [], {}
    for i, name in enumerate(names):
        ref = torch_reference.randomize(torch_reference.build(name), seed=i)
        size = 32 if name.startswith("vgg") else 64
        x = np.random.default_rng(i).standard_normal((2, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            refs[name] = ref(torch.from_numpy(x)).numpy()
        pth, xf, out = (str(tmp_path / f"{name}.{ext}") for ext in ("pth", "x.npy", "y.npy"))
        torch.save(ref.state_dict(), pth)
        del ref
        np.save(xf, x)
        jobs.append((name, pth, xf, out))
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "True"
    for name, _, _, out in jobs:
        y, ref = np.load(out), refs[name]
        assert y.shape == ref.shape == (2, 1000)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        assert err <= 1e-4, f"{name}: relative error {err:.2e} against the torch reference"


def test_torchvision_files_load_without_torch_same_logits(tmp_path):
    _same_logits_without_torch(FAST, tmp_path)


@pytest.mark.slow  # ~0.5 GB per VGG file, 60M parameters for ResNet-152
def test_torchvision_files_load_without_torch_same_logits_all(tmp_path):
    _same_logits_without_torch(SLOW, tmp_path)
