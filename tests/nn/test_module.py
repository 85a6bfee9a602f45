"""nn.Module, Parameter, Sequential, ModuleList, Linear: names, state dicts, modes, saving."""
import math
import os
from collections import OrderedDict

import numpy as np
import pytest

import minidl as md
from minidl import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4, np.float32))
        self.register_buffer("count", np.zeros(2, np.float32))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x) * self.scale)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2, bias=False))
        self.w = nn.Parameter(np.zeros(2, np.float32))

    def forward(self, x):
        return self.head(self.first(x)) + self.w


NAMES = ["w", "first.scale", "first.fc.weight", "first.fc.bias", "head.1.weight"]


def test_named_parameters_order_and_names():
    md.manual_seed(0)
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    # own parameters first, then children in the order they were assigned (depth first)
    assert names == NAMES
    assert [p.shape for p in net.parameters()] == [(2,), (4,), (4, 3), (4,), (2, 4)]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.num_parameters() == 2 + 4 + 12 + 4 + 8
    assert [n for n, _ in net.named_modules()] == ["", "first", "first.fc", "first.drop", "head", "head.0", "head.1"]


def test_shared_parameter_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)
            self.b.weight = self.a.weight
    assert len(Tied().parameters()) == 3


def test_reassigning_an_attribute_moves_it():
    b = Block()
    b.scale = None
    assert "scale" not in dict(b.named_parameters())
    b.fc = nn.Identity()
    assert [n for n, _ in b.named_parameters()] == []


def test_assigning_a_non_parameter_to_a_parameter_is_an_error():
    # PyTorch raises here; silently dropping the parameter would leave it out of parameters(),
    # the optimiser and the state dict
    fc = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"Linear: cannot assign Tensor as parameter 'weight'.*nn\.Parameter"):
        fc.weight = md.tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match=r"cannot assign ndarray as parameter 'bias'"):
        fc.bias = np.zeros(2, np.float32)
    assert [n for n, _ in fc.named_parameters()] == ["weight", "bias"]
    fc.weight = nn.Parameter(np.zeros((2, 3), np.float32))  # a Parameter (or None) is fine
    assert np.all(fc.state_dict()["weight"] == 0)


def test_assigning_a_non_module_to_a_child_module_is_an_error():
    b = Block()
    with pytest.raises(TypeError, match=r"Block: cannot assign int as child module 'fc'"):
        b.fc = 3
    assert "fc.weight" in b.state_dict()


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match=r"call super\(\)\.__init__\(\)"):
        Bad()


def test_state_dict_keys_values_and_buffers():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["w", "first.scale", "first.count", "first.fc.weight", "first.fc.bias", "head.1.weight"]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    np.testing.assert_array_equal(sd["first.fc.weight"], net.first.fc.weight.data)


def test_load_state_dict_round_trip_and_copies():
    md.manual_seed(1)
    a = Net()
    md.manual_seed(2)
    b = Net()
    assert not np.array_equal(a.first.fc.weight.data, b.first.fc.weight.data)
    sd = a.state_dict()
    b.load_state_dict(sd)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    sd["first.fc.weight"][...] = 123.0  # the model owns a copy, not the caller's array
    assert not (b.first.fc.weight.data == 123.0).any()


def test_load_state_dict_keeps_parameter_dtype():
    net = nn.Linear(2, 3)
    net.load_state_dict({"weight": np.ones((3, 2), np.float64), "bias": np.zeros(3, np.float64)})
    assert net.weight.dtype == np.float32 and isinstance(net.weight, nn.Parameter)


def test_load_state_dict_errors_name_the_key():
    net = Net()
    sd = net.state_dict()
    missing = dict(sd)
    del missing["first.fc.bias"]
    with pytest.raises(KeyError, match="missing keys: first.fc.bias"):
        net.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys: extra.weight"):
        net.load_state_dict({**sd, "extra.weight": np.zeros(1)})
    wrong = dict(sd)
    wrong["head.1.weight"] = np.zeros((4, 2), np.float32)
    before = net.first.fc.weight.data.copy()
    sd2 = dict(wrong)
    sd2["first.fc.weight"] = np.full((4, 3), 9.0, np.float32)
    with pytest.raises(ValueError, match=r"'head.1.weight' has shape \(4, 2\) in the state dict but \(2, 4\)"):
        net.load_state_dict(sd2)
    np.testing.assert_array_equal(net.first.fc.weight.data, before)  # nothing half-loaded


def test_load_state_dict_non_strict_skips_missing_and_unexpected():
    net = nn.Linear(2, 3)
    net.load_state_dict({"weight": np.ones((3, 2)), "other": np.zeros(2)}, strict=False)
    np.testing.assert_array_equal(net.weight.data, np.ones((3, 2)))


def test_num_batches_tracked_is_ignored():
    net = nn.Linear(2, 3)
    sd = {**net.state_dict(), "bn.num_batches_tracked": np.array(5)}
    net.load_state_dict(sd)


def test_load_torch_tensors():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    tl = torch.nn.Linear(3, 2)
    net = nn.Linear(3, 2)
    net.load_state_dict(tl.state_dict())  # torch tensors (with .numpy()) are accepted
    np.testing.assert_allclose(net.weight.data, tl.weight.detach().numpy())
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(net(md.tensor(x)).data, tl(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = md.tensor(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(net(x).data, net(x).data)  # dropout off in eval
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_and_backward_through_module():
    net = Net()
    net.eval()
    net(md.tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_save_load_npz_round_trip(tmp_path):
    md.manual_seed(3)
    a = Net()
    path = tmp_path / "sub" / "net.npz"
    a.save(path)
    assert path.exists()
    assert [f for f in os.listdir(path.parent)] == ["net.npz"]  # no temporary left behind
    b = Net()
    b.load(path)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    net = Net()
    net.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == good           # the old file is untouched
    assert os.listdir(tmp_path) == ["net.npz"]  # and the temporary file is gone


def test_sequential_indexing_len_iter_append():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(s) == 3
    assert isinstance(s[0], nn.Linear) and isinstance(s[-1], nn.Linear) and s[-1] is s[2]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2 and sub[0] is s[1]
    assert list(sub.state_dict()) == ["2.weight", "2.bias"]  # names kept, as in PyTorch
    assert [type(m).__name__ for m in s] == ["Linear", "ReLU", "Linear"]
    assert [n for n, _ in s.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    s.append(nn.ReLU())
    assert len(s) == 4
    x = md.tensor(np.ones((5, 2), np.float32))
    np.testing.assert_allclose(s(x).data, np.maximum(s[2](s[1](s[0](x))).data, 0))


def test_sequential_from_ordered_dict():
    s = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in s.named_parameters()] == ["fc.weight", "fc.bias"]
    assert s[0] is s.fc


def test_module_list():
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert len(ml) == 2 and ml[1] is list(ml)[1]
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_linear_init_bounds_like_pytorch():
    md.manual_seed(0)
    fc = nn.Linear(300, 200)
    bound = 1 / math.sqrt(300)
    for p in (fc.weight.data, fc.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
        assert np.abs(p).max() > 0.95 * bound          # uses the whole range
        assert abs(p.mean()) < 0.1 * bound
    assert abs(fc.weight.data.std() - bound / math.sqrt(3)) < 0.02 * bound  # U(-b, b) has std b / sqrt(3)
    assert nn.Linear(3, 2, bias=False).bias is None


def test_init_is_repeatable_by_seed():
    md.manual_seed(5)
    a = nn.Linear(4, 4).weight.data
    md.manual_seed(5)
    b = nn.Linear(4, 4).weight.data
    np.testing.assert_array_equal(a, b)


def test_repr_shows_structure():
    r = repr(Net())
    assert "(first): Block(" in r and "(fc): Linear(3, 4, bias=True)" in r and "(head): Sequential(" in r
