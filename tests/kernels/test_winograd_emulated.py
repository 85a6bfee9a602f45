"""minidl/kernels/cuda/winograd.cu and winograd.py's CuPy launcher, checked on the CPU: no GPU needed.

As tests/test_gpu_kernels_emulated.py does for the other kernels: the CUDA source is compiled as
plain C++ with the CUDA built-ins emulated (every thread of the launch grid run one after the
other), and winograd.py's ``_GpuTransforms`` drives it through a small stand-in for ``cupy``
(NumPy arrays, a RawModule whose kernels are the host-compiled ones), with tiny blocks and grids
so that every grid-stride loop wraps around. The whole driver (forward, backward) then runs on
the emulated transforms and must equal the per-tile NumPy reference.

What this cannot catch (NVRTC compile errors, real launch limits) the GPU tests check on a GPU.
"""
import ctypes
import shutil
import subprocess
import types

import numpy as np
import pytest

from minidl.kernels import winograd as wg
from minidl.kernels import winograd_transforms as wtr

CXX = shutil.which("g++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (g++ or clang++) to emulate the CUDA kernels")

_HEADER = r"""
#include <algorithm>
struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 blockIdx, blockDim, gridDim, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
using std::min; using std::max;
template <typename F> void emu_launch(unsigned gx, unsigned gy, unsigned bx, F f) {
    gridDim = {gx, gy, 1}; blockDim = {bx, 1, 1};
    for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x)
            for (unsigned t = 0; t < bx; ++t) { blockIdx = {x, y, 0}; threadIdx = {t, 0, 0}; f(); }
}
"""

_SIGNATURES = {  # kernel: (parameters with T for the dtype, count)
    "wg_input_kernel": ("const T* a0, T* a1, long long a2, int a3, int a4, int a5, int a6, int a7, int a8, int a9", 10),
    "wg_output_kernel": ("const T* a0, const T* a1, T* a2, long long a3, int a4, int a5, int a6, int a7, int a8, "
                         "int a9", 10),
    "wg_grad_output_kernel": ("const T* a0, T* a1, long long a2, int a3, int a4, int a5, int a6, int a7", 8),
    "wg_grad_input_kernel": ("const T* a0, T* a1, long long a2, int a3, int a4, int a5, int a6, int a7, int a8, "
                             "int a9, int a10, int a11", 12),
}
_CTYPE = {"float": "f32", "double": "f64"}


@pytest.fixture(scope="module")
def emulated_lib(tmp_path_factory):
    assert set(wtr.CUDA_KERNELS) == set(_SIGNATURES), "a kernel was added to winograd.cu: add its launcher here"
    wrappers = []
    for name, (params, nargs) in _SIGNATURES.items():
        for ctype, suffix in _CTYPE.items():
            for m in wg.TILES:
                args = ", ".join(f"a{i}" for i in range(nargs))
                wrappers.append(f'extern "C" void {name}_{suffix}_{m}(unsigned gx, unsigned gy, unsigned bx, '
                                f'{params.replace("T", ctype)}) '
                                f'{{ emu_launch(gx, gy, bx, [&] {{ {name}<{ctype}, {m}>({args}); }}); }}')
    folder = tmp_path_factory.mktemp("winograd_emu")
    cpp, lib = folder / "winograd.cpp", folder / "winograd.so"
    with open(wtr.CUDA_SOURCE) as f:
        cpp.write_text(_HEADER + f.read() + "\n" + "\n".join(wrappers) + "\n")
    result = subprocess.run([CXX, "-std=c++14", "-O1", "-shared", "-fPIC", "-o", str(lib), str(cpp)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"winograd.cu does not compile as C++:\n{result.stderr[-4000:]}"
    return ctypes.CDLL(str(lib))


def _ctype_arg(a):
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous, "a kernel was handed a non-contiguous array"
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.int32):
        return ctypes.c_int(int(a))
    if isinstance(a, np.int64):
        return ctypes.c_longlong(int(a))
    raise TypeError(f"kernel argument of unexpected type {type(a).__name__}: pass NumPy scalars of exact width")


def _fake_cupy(lib, launches):
    cp = types.ModuleType("cupy")
    for name in ("empty", "zeros", "asarray", "ascontiguousarray", "matmul", "stack"):
        setattr(cp, name, getattr(np, name))

    class RawModule:
        def __init__(self, code, options=(), name_expressions=()):
            with open(wtr.CUDA_SOURCE) as f:
                assert code == f.read()
            self.names = set(name_expressions)

        def get_function(self, expr):
            assert expr in self.names, f"{expr} was not registered as a name expression"
            kernel, rest = expr[:-1].split("<")
            ctype, m = (s.strip() for s in rest.split(","))
            fn = getattr(lib, f"{kernel}_{_CTYPE[ctype]}_{m}")

            def launch(grid, block, args):
                assert block[1] == block[2] == 1 and grid[1] == grid[2] == 1
                launches.append(kernel)
                fn(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]),
                   *[_ctype_arg(a) for a in args])
            return launch

    cp.RawModule = RawModule
    return cp


@pytest.fixture
def emulated(emulated_lib, monkeypatch):
    """winograd.forward/backward running on the emulated CUDA transforms, tiny grids; the launches made."""
    launches = []
    transforms = wtr._GpuTransforms(_fake_cupy(emulated_lib, launches))
    monkeypatch.setattr(wg, "_transforms", lambda x: transforms)
    monkeypatch.setattr(wtr, "_THREADS", 8)
    monkeypatch.setattr(wtr, "_MAX_BLOCKS", 3)
    return launches


SHAPES = [  # (N, C, H, W, K, padding, groups)
    (2, 3, 7, 9, 4, (1, 1), 1),
    (1, 4, 8, 8, 6, (0, 0), 2),
    (2, 2, 5, 6, 3, (2, 1), 1),
    (1, 1, 3, 3, 2, (0, 0), 1),
]


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", wg.TILES)
@pytest.mark.parametrize("shape", SHAPES)
def test_emulated_cuda_equals_reference(emulated, shape, m, dtype):
    n, c, h, w, k, (ph, pw), groups = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    y = wg.forward(x, wt, b, (ph, pw), groups, m)
    np.testing.assert_allclose(y, wg.reference_forward(x, wt, b, ph, pw, m, groups), **_tol(dtype))
    np.testing.assert_allclose(wg.forward(x, wt, None, (ph, pw), groups, m),
                               wg.reference_forward(x, wt, None, ph, pw, m, groups), **_tol(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = wg.backward(x, wt, gy, (ph, pw), groups, m)
    for name, a, r in zip(("gx", "gw", "gb"), got, wg.reference_backward(x, wt, gy, ph, pw, m, groups)):
        np.testing.assert_allclose(a, r, err_msg=name, **_tol(dtype))
    assert set(emulated) == set(wtr.CUDA_KERNELS)   # every transform ran on the emulated CUDA side


@pytest.mark.parametrize("m", wg.TILES)
def test_emulated_cuda_5x5_equals_the_reference(emulated, m):
    """The 5x5 path (stacking by array ops, then the 3x3 driver) on the emulated CUDA transforms."""
    rng = np.random.default_rng(2)
    x, wt, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((2, 2, 5, 5)), rng.standard_normal(2)
    gy = rng.standard_normal((2, 2, 7, 6))
    got = [wg.forward(x, wt, b, (2, 2), 2, m)] + list(wg.backward(x, wt, gy, (2, 2), 2, m))
    assert set(emulated) == set(wtr.CUDA_KERNELS)
    x4, w4 = wg._as_3x3(np, x, wt, (2, 2), 2)
    gx4, gw4, gb = wg.reference_backward(x4, w4, gy, 0, 0, m, 2)
    want = [wg.reference_forward(x4, w4, b, 0, 0, m, 2), wg._unstack_crops(np, gx4, x.shape, (2, 2), 2),
            wg._unstack_weights(np, gw4), gb]
    for name, a, r in zip(("y", "gx", "gw", "gb"), got, want):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12, err_msg=name)


def test_grad_input_writes_every_element(emulated):
    """The gather kernel owns every gx element (no zero-fill before it): NaNs in the buffer vanish."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 10, 10))
    wt = rng.standard_normal((2, 2, 3, 3))
    gy = rng.standard_normal((1, 2, 8, 8))
    z = rng.standard_normal((36, 2, 4))
    gx = np.full(x.shape, np.nan)
    transforms = wg._transforms(x)
    transforms.grad_input(z, 0, 0, 2, 2, 4, gx)
    assert np.isfinite(gx).all()
    np.testing.assert_allclose(wg.backward(x, wt, gy, (0, 0), 1, 4)[0],
                               wg.reference_backward(x, wt, gy, 0, 0, 4)[0], rtol=1e-12, atol=1e-12)
