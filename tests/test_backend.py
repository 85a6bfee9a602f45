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
