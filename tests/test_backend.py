"""Backend selection and device moves; on this machine without CuPy, clear errors."""
import sys

import numpy as np
import pytest

import minidl as md
from minidl import backend


@pytest.fixture
def no_cupy(monkeypatch):
    """Act as if CuPy were not installed (whatever this machine has)."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_gpu_ok", None)


def test_xp_of_and_device_of_numpy():
    a = np.zeros(3)
    assert backend.xp_of(a) is np
    assert backend.xp_of(a, 1.0, np.float32(2)) is np
    assert backend.xp_of() is np
    assert backend.device_of(a) == "cpu"
    assert md.tensor(a).device == "cpu"


def test_gpu_available_is_a_bool_and_never_raises():
    assert isinstance(backend.gpu_available(), bool)
    assert isinstance(md.gpu_available(), bool)
    reason = backend.gpu_unavailable_reason()
    assert (reason is None) == backend.gpu_available()


def test_gpu_available_false_without_cupy(no_cupy):
    assert backend.gpu_available() is False
    reason = backend.gpu_unavailable_reason()
    assert "CuPy" in reason and 'pip install -e ".[cuda12]"' in reason


def test_gpu_available_false_when_no_device(monkeypatch):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice")

    class FakeCupy:
        class cuda:
            runtime = FakeRuntime

    monkeypatch.setattr(backend, "_cupy", FakeCupy)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_gpu_ok", None)
    assert backend.gpu_available() is False
    assert "no usable CUDA device" in backend.gpu_unavailable_reason()
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        backend.to_device(np.zeros(1), "cuda")


def test_to_device_cuda_without_cupy_names_cupy_and_hint(no_cupy):
    for call in (lambda: backend.to_device(np.zeros(2), "cuda"),
                 lambda: md.tensor([1.0]).to("cuda"),
                 lambda: md.tensor([1.0], device="cuda"),
                 lambda: md.nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError) as e:
            call()
        msg = str(e.value)
        assert "CuPy" in msg and 'pip install -e ".[cuda12]"' in msg


@pytest.mark.parametrize("bad", ["gpu", "tpu", "CPU", "", "mps"])
def test_bad_device_names_raise_value_error(bad):
    with pytest.raises(ValueError, match="unknown device"):
        backend.to_device(np.zeros(1), bad)
    with pytest.raises(ValueError, match="unknown device"):
        md.tensor([1.0], device=bad)


def test_to_cpu_and_as_numpy():
    a = np.arange(3.0)
    assert backend.to_device(a, "cpu") is a
    assert backend.check_device(None) == "cpu"
    assert backend.check_device("cuda:0") == "cuda"
    assert backend.check_device("cuda") == "cuda"


@pytest.mark.parametrize("name", ["cuda:1", "cuda:7"])
def test_other_gpu_indices_are_refused_with_the_way_to_choose_a_gpu(name):
    # minidl runs on CuPy's current device: "cuda:1" must not silently become GPU 0
    index = name[5:]
    for call in (lambda: backend.check_device(name), lambda: md.tensor([1.0], device=name),
                 lambda: md.nn.Linear(2, 2).to(name)):
        with pytest.raises(ValueError, match=rf"'{name}'.*CUDA_VISIBLE_DEVICES={index}"):
            call()


@pytest.mark.parametrize("name", ["cuda:", "cuda:x", "cuda:-1", "cuda:0:0"])
def test_malformed_cuda_names_are_unknown_devices(name):
    with pytest.raises(ValueError, match="unknown device"):
        backend.check_device(name)
    np.testing.assert_array_equal(backend.as_numpy([1, 2]), [1, 2])


def test_scatter_add_accumulates_repeats():
    target = np.zeros(3)
    backend.scatter_add(target, np.array([0, 0, 2]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(target, [3.0, 0.0, 3.0])


def test_import_does_not_import_cupy():
    import subprocess
    code = "import sys, minidl; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("os").path.dirname(__import__("os").path.dirname(__file__)))
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_round_trip_to_gpu():
    x = md.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and backend.xp_of(y.data) is not np
    (y * y).sum().backward()
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])


@pytest.mark.gpu
def test_mixing_devices_is_a_clear_error():
    with pytest.raises(RuntimeError, match="different devices"):
        md.tensor([1.0]) + md.tensor([1.0], device="cuda")


# ---- on a GPU: every core op gives the CPU's values and gradients (skipped without one) -------------------

def _gpu_cases():
    from minidl import functional as F
    idx = np.array([0, 2, 2, 1])
    w = np.random.default_rng(5).standard_normal((5, 4))
    return {
        "add": lambda x: x + x[0], "sub": lambda x: 1.0 - x, "mul": lambda x: x * x, "div": lambda x: x / (x * x + 1.0),
        "neg": lambda x: -x, "pow": lambda x: (x * x + 1.0) ** 1.5, "pow_tensor": lambda x: (x * x + 1.0) ** x,
        "matmul": lambda x: x @ x.T, "matmul_batched": lambda x: x.reshape(3, 2, 2) @ x.reshape(3, 2, 2),
        "exp": F.exp, "log": lambda x: F.log(x * x + 1.0), "sqrt": lambda x: F.sqrt(x * x + 1.0),
        "sum": lambda x: x.sum(axis=1, keepdims=True), "mean": lambda x: x.mean(axis=0), "max": lambda x: x.max(axis=1),
        "reshape": lambda x: x.reshape(2, 6), "transpose": lambda x: x.T, "getitem": lambda x: x[idx, 1:],
        "broadcast_to": lambda x: x.broadcast_to((2, 3, 4)), "concat": lambda x: F.concat([x, x * 2.0], axis=1),
        "flatten": lambda x: F.flatten(x[None]), "relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid,
        "softmax": F.softmax, "log_softmax": F.log_softmax,
        "linear": lambda x: F.linear(x, md.tensor(w, dtype=x.dtype, device=x.device),
                                     md.tensor(w[:, 0], dtype=x.dtype, device=x.device)),
        "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 3, 1])),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(_gpu_cases()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_op_on_gpu_matches_cpu(name, dtype):
    fn = _gpu_cases()[name]
    a = np.random.default_rng(1).standard_normal((3, 4)).astype(dtype)
    results = {}
    for device in ("cpu", "cuda"):
        x = md.tensor(a, requires_grad=True, device=device)
        y = fn(x)
        assert y.device == device and y.dtype == dtype
        y.backward(md.tensor(np.ones(y.shape, dtype), device=device))
        assert backend.device_of(x.grad) == device and x.grad.dtype == dtype
        results[device] = (y.numpy(), backend.as_numpy(x.grad))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], **tol)
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], **tol)


@pytest.mark.gpu
def test_gradcheck_on_gpu():
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True, device="cuda")
    assert md.gradcheck(lambda x: (x @ x.T).exp().sum(axis=0), x)


@pytest.mark.gpu
def test_dropout_on_gpu_is_seeded():
    from minidl import functional as F
    x = md.tensor(np.ones((50, 50), np.float32), device="cuda")
    md.manual_seed(4)
    a = F.dropout(x, 0.5).numpy()
    md.manual_seed(4)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    assert set(np.unique(a)) == {0.0, 2.0}


@pytest.mark.gpu
def test_module_and_sgd_on_gpu_match_cpu():
    from minidl import nn, optim
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    results = []
    for device in ("cpu", "cuda"):
        md.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).to(device)
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
        for _ in range(3):
            opt.zero_grad()
            md.functional.cross_entropy(net(md.tensor(x, device=device)), target).backward()
            opt.step()
        sd = net.state_dict()
        assert all(isinstance(v, np.ndarray) for v in sd.values())
        assert isinstance(opt.state_dict()["state"][0]["momentum"], np.ndarray)
        results.append(sd)
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-4, atol=1e-5)
