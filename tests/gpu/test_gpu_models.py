"""Whole models on the GPU: device moves keep weights bit-exactly, optimiser state follows the
model, and one SGD step gives the same losses and weights on CPU and GPU (float32 tolerance)."""
import numpy as np
import pytest

import minidl as md
from minidl import backend, models, optim
from minidl import functional as F

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def tf32_off():
    md.set_tf32(False)
    yield
    md.set_tf32(False)


def rel_err(a, b):
    a, b = backend.as_numpy(a).astype(np.float64), backend.as_numpy(b).astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _twins(build):
    """The same model twice (same weights), one for each device."""
    md.manual_seed(0)
    a = build()
    b = build()
    b.load_state_dict(a.state_dict())
    return a, b


def _step(net, opt, x, t):
    opt.zero_grad()
    loss = F.cross_entropy(net(md.tensor(x, device=net.device)), t)
    loss.backward()
    opt.step()
    return float(loss.item())


@pytest.mark.parametrize("name,build,shape,batch", [
    ("alexnet", lambda: models.alexnet(num_classes=10, dropout=0.0), (3, 227, 227), 2),   # LRN, groups
    ("resnet_cifar20", lambda: models.resnet_cifar(20), (3, 32, 32), 8),                  # BatchNorm, shortcuts
])
def test_one_sgd_step_same_on_cpu_and_gpu(name, build, shape, batch):
    cpu_net, gpu_net = _twins(build)
    gpu_net.to("cuda")
    assert all(p.device == "cuda" for p in gpu_net.parameters())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    t = rng.integers(0, 10, size=batch)
    losses = {}
    for dev, net in (("cpu", cpu_net), ("cuda", gpu_net)):
        net.train()
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        first = _step(net, opt, x, t)
        second = _step(net, opt, x, t)   # the loss after one update: the step itself agrees
        losses[dev] = (first, second)
    for i in range(2):
        assert abs(losses["cuda"][i] - losses["cpu"][i]) <= 1e-4 * abs(losses["cpu"][i]), (name, losses)
    assert losses["cpu"][1] != losses["cpu"][0]
    sd_cpu, sd_gpu = cpu_net.state_dict(), gpu_net.state_dict()
    for k in sd_cpu:
        if sd_cpu[k].dtype.kind == "f":
            assert rel_err(sd_gpu[k], sd_cpu[k]) <= 1e-4, k


def test_model_to_gpu_and_back_is_bit_exact():
    md.manual_seed(0)
    net = models.resnet_cifar(20)
    net.train()
    net(md.tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)))  # moves BN buffers
    before = {k: v.copy() for k, v in net.state_dict().items()}
    for p in net.parameters():
        p.grad = np.random.default_rng(1).standard_normal(p.shape).astype(np.float32)
    grads = [p.grad.copy() for p in net.parameters()]
    net.to("cuda")
    import cupy as cp
    assert all(isinstance(p.data, cp.ndarray) and isinstance(p.grad, cp.ndarray) for p in net.parameters())
    assert all(isinstance(getattr(m, b), cp.ndarray) for _, m, b in net.named_buffers())
    assert net.device == "cuda"
    net.to("cpu")
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert type(after[k]) is np.ndarray and after[k].dtype == before[k].dtype
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for p, g in zip(net.parameters(), grads):
        assert type(p.grad) is np.ndarray
        np.testing.assert_array_equal(p.grad, g)


def test_optimiser_state_follows_the_model():
    """Two momentum steps: the first on the CPU, the second after Module.to("cuda"); the momentum
    buffers must move with the parameters and the result equal two CPU steps."""
    build = lambda: md.nn.Sequential(md.nn.Linear(6, 8), md.nn.ReLU(), md.nn.Linear(8, 3))  # noqa: E731
    ref, net = _twins(build)
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, size=5)
    opt_ref = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    _step(ref, opt_ref, x, t)
    _step(ref, opt_ref, x, t)
    _step(net, opt, x, t)
    assert all(backend.device_of(v) == "cpu" for st in opt.state.values() for v in st.values())
    net.to("cuda")
    _step(net, opt, x, t)
    assert opt.state and all(backend.device_of(v) == "cuda" for st in opt.state.values() for v in st.values())
    for (k, a), b in zip(ref.state_dict().items(), net.state_dict().values()):
        assert rel_err(b, a) <= 1e-5, k
    net.to("cpu")
    _step(net, opt, x, t)
    assert all(backend.device_of(v) == "cpu" for st in opt.state.values() for v in st.values())
    sd = opt.state_dict()
    assert all(type(a) is np.ndarray for st in sd["state"].values() for a in st.values())


def test_load_state_dict_into_a_gpu_model_keeps_it_there():
    src, dst = _twins(lambda: models.resnet_cifar(20))
    dst.to("cuda")
    dst.load_state_dict(src.state_dict())
    assert dst.device == "cuda"
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, src.state_dict()[k])
