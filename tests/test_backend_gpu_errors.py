"""GPU error paths that can be checked without a GPU: what a user sees when CuPy or the device is
missing, when an op mixes devices, and when memory runs out; and that a CPU run never imports CuPy."""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import minidl as md
from minidl import backend, nn
from minidl.autograd import Function

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh_backend(monkeypatch):
    """backend's cached answers cleared (and restored afterwards by monkeypatch)."""
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_gpu_ok", None)
    return monkeypatch


@pytest.fixture
def no_cupy(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError


def _fake_cupy(device_count):
    cp = types.ModuleType("cupy")
    runtime = types.SimpleNamespace()
    if isinstance(device_count, Exception):
        def count():
            raise device_count
    else:
        def count():
            return device_count
    runtime.getDeviceCount = count
    cp.cuda = types.SimpleNamespace(runtime=runtime)
    return cp


def test_cuda_without_cupy_says_so_and_how_to_install(no_cupy):
    for ask in (lambda: md.tensor([1.0], device="cuda"),
                lambda: md.tensor([1.0]).to("cuda"),
                lambda: nn.Linear(2, 3).to("cuda"),
                lambda: md.set_tf32(True)):
        with pytest.raises(RuntimeError) as info:
            ask()
        msg = str(info.value)
        assert 'device "cuda" requested' in msg and "CuPy is not installed" in msg
        assert 'pip install -e ".[cuda12]"' in msg and '".[cuda13]"' in msg
    assert md.gpu_available() is False
    assert backend.tf32_enabled() is False


def test_cuda_with_cupy_but_no_device_says_so(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", _fake_cupy(0))
    with pytest.raises(RuntimeError) as info:
        md.tensor([1.0], device="cuda")
    msg = str(info.value)
    assert "CuPy is installed but no CUDA device was found" in msg and "nvidia-smi" in msg
    assert "not installed" not in msg
    assert md.gpu_available() is False


def test_cuda_with_a_broken_driver_says_why(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", _fake_cupy(OSError("cudaErrorInsufficientDriver")))
    reason = backend.gpu_unavailable_reason()
    assert "no usable CUDA device" in reason and "cudaErrorInsufficientDriver" in reason
    with pytest.raises(RuntimeError, match="cudaErrorInsufficientDriver"):
        backend.require_gpu()


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="'tpu'.*\"cpu\" or \"cuda\""):
        md.tensor([1.0], device="tpu")


class _FakeCupyArray:
    """Looks like a cupy array to backend.device_of (by its type's module); holds nothing."""
    shape, dtype, ndim, size = (1,), np.dtype(np.float32), 1, 1


_FakeCupyArray.__module__ = "cupy._core.fake"


def test_op_on_two_devices_names_both():
    a = md.tensor([1.0])
    b = md.tensor([2.0])
    b.data = _FakeCupyArray()
    assert (a.device, b.device) == ("cpu", "cuda")
    with pytest.raises(RuntimeError) as info:
        a + b
    msg = str(info.value)
    assert msg.startswith("Add:") and "input 0 on cpu" in msg and "input 1 on cuda" in msg and ".to(" in msg


class _FakeOOM(MemoryError):
    """The shape of cupy.cuda.memory.OutOfMemoryError: a MemoryError with CuPy's message."""

    def __init__(self, size, total):
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")


_FakeOOM.__module__ = "cupy.cuda.memory"


class _Greedy(Function):
    def __init__(self, fail_in):
        self.fail_in = fail_in

    def forward(self, x):
        if self.fail_in == "forward":
            raise _FakeOOM(3 * 2 ** 30, 70 * 2 ** 30)
        return x * 2

    def backward(self, gy):
        raise _FakeOOM(2 ** 30, 5)


def test_out_of_memory_in_forward_names_the_op_and_size():
    with pytest.raises(MemoryError) as info:
        _Greedy("forward")(md.tensor([1.0], requires_grad=True))
    msg = str(info.value)
    assert msg.startswith("_Greedy forward: out of GPU memory asking for 3,221,225,472 bytes (3.00 GiB)")
    assert "free_all_blocks" in msg
    assert info.value.requested_bytes == 3 * 2 ** 30
    assert isinstance(info.value.__cause__, _FakeOOM)


def test_out_of_memory_in_backward_names_the_op_and_size():
    y = _Greedy("backward")(md.tensor([1.0], requires_grad=True))
    with pytest.raises(MemoryError, match=r"^_Greedy backward: out of GPU memory asking for 1,073,741,824 bytes"):
        y.sum().backward()


def test_host_memory_error_is_named_too():
    class HostOOM(MemoryError):
        _total_size = 5 * 2 ** 40

    class Big(Function):
        def forward(self, x):
            raise HostOOM("Unable to allocate 5.00 TiB for an array")

    with pytest.raises(MemoryError, match=r"^Big forward: out of host memory asking for 5,497,558,138,880 bytes"):
        Big()(md.tensor([1.0]))


def test_cpu_run_never_imports_cupy(tmp_path):
    """With a (harmless) cupy importable, importing minidl and training a small net on the CPU must
    leave it unimported: CuPy is touched only when the GPU is asked for."""
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import minidl as md
        from minidl import nn, optim, functional as F
        md.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x = md.tensor(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
        loss = F.cross_entropy(net(x), np.array([0, 1, 2, 1]))
        loss.backward(); opt.step()
        _ = x.numpy(), x.to("cpu"), md.gpu_available  # naming it does not call it
        print("IMPORTED" if "cupy" in sys.modules else "CLEAN")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "CLEAN"


def test_cupy_imported_only_when_cuda_is_asked_for(tmp_path):
    """The converse of the test above, so it cannot pass vacuously: asking for the GPU does import it."""
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    script = "import sys, minidl\nprint(minidl.gpu_available(), 'cupy' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "True"]
