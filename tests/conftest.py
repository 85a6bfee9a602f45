"""Shared test setup: the repository root on sys.path, GPU tests skipped where no GPU is usable, and
the kernel backends (reference, Numba, emulated CUDA, CUDA on a GPU) as fixtures."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # tests also run from a plain checkout, before `pip install -e .`
    sys.path.insert(0, ROOT)

from minidl import backend as md_backend  # noqa: E402


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    reason = md_backend.gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a usable GPU (an NVIDIA GPU and pip install -e '.[cuda12]'): {reason}")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture
def seeded():
    """minidl's generators reseeded to 0 before the test (and a NumPy generator for the data)."""
    from minidl import random
    random.manual_seed(0)
    return np.random.default_rng(0)


# ---- kernel backends ---------------------------------------------------------------------------
class KernelBackend:
    """One backend of minidl.kernels for a test: ``ops`` (the namespace of every kernel), ``put``
    (a host array onto the backend's device) and ``get`` (a result back to a host array)."""

    def __init__(self, name, ops, put=np.asarray, get=np.asarray):
        self.name, self.ops, self.put, self.get = name, ops, put, get

    def __repr__(self):
        return f"KernelBackend({self.name})"


def _emulation():
    """tests/kernels/_emulated_cuda.py, loaded once by path (the test folders are not packages)."""
    name = "minidl_tests_emulated_cuda"
    if name not in sys.modules:
        import importlib.util
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tests", "kernels", "_emulated_cuda.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture(scope="session")
def emulated_cuda_libs(tmp_path_factory):
    """Every family's CUDA source compiled as host C++ (tests/kernels/_emulated_cuda.py), once a session."""
    _emulated_cuda = _emulation()
    if _emulated_cuda.CXX is None:
        pytest.skip("needs a C++ compiler (g++ or clang++) to emulate the CUDA kernels")
    return _emulated_cuda.compile_families(tmp_path_factory.mktemp("cuda_emu"))


def make_kernel_backend(name, request):
    """The KernelBackend ``name``: "reference", "numba", "emulated" (the CUDA C on the host) or "cuda"."""
    from minidl import kernels
    if name == "emulated":
        _emulation().install(request.getfixturevalue("monkeypatch"), request.getfixturevalue("emulated_cuda_libs"))
        return KernelBackend(name, kernels.get("cuda"))
    if name == "cuda":
        cp = md_backend.require_gpu()
        return KernelBackend(name, kernels.get("cuda"), put=cp.asarray, get=cp.asnumpy)
    return KernelBackend(name, kernels.get(name))


@pytest.fixture
def make_backend(request):
    """make_backend(name) -> the KernelBackend ``name``, for tests that build their own parameter lists."""
    return lambda name: make_kernel_backend(name, request)


ALL_BACKENDS = ["reference", "numba", "emulated", pytest.param("cuda", marks=pytest.mark.gpu)]
FAST_BACKENDS = ALL_BACKENDS[1:]   # the ones checked against the reference


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every kernel backend in turn (tests of properties any correct kernel has)."""
    return make_kernel_backend(request.param, request)


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request):
    """The Numba, emulated-CUDA and (on a GPU) CUDA backends, for tests against the reference."""
    return make_kernel_backend(request.param, request)


@pytest.fixture(params=["emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def cuda_backend(request):
    """The CUDA launchers only: emulated on the host, and on a GPU."""
    return make_kernel_backend(request.param, request)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """"cpu", and "cuda" where a GPU is usable: the functional grids run on both."""
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param
