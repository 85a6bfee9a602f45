"""The CUDA source of minidl/kernels/cuda/*.cu, run on the CPU: no GPU, no CuPy needed.

Each family's .cu (after common.cuh) is compiled as plain C++ by the host compiler, with the CUDA
built-ins (blockIdx, threadIdx, ...) emulated by running every thread of the launch grid one after
the other; one extern "C" launcher per kernel and dtype is generated from the kernel's own
signature in the source. The family modules' ``cuda_*`` launchers then run against a small
stand-in for ``cupy`` (NumPy arrays, and a RawModule whose kernels are the host-compiled ones),
with tiny blocks and grids so that every grid-stride loop wraps around.

This catches indexing mistakes in the CUDA C and argument-order mistakes in the launchers; what it
cannot catch (NVRTC compile errors, races) the GPU runs of the same tests check. atomicAdd is not
emulated: a backward kernel must be a gather (deterministic), and so must every other kernel.
"""
import ctypes
import re
import shutil
import subprocess
import types

import numpy as np

from minidl import kernels
from minidl.kernels import _cuda

CXX = shutil.which("g++") or shutil.which("clang++")

HEADER = r"""
#include <algorithm>
#include <cmath>
struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 blockIdx, blockDim, gridDim, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
using std::min; using std::max; using std::sqrt; using std::pow;
template <typename F> void emu_launch(unsigned gx, unsigned gy, unsigned bx, F f) {
    gridDim = {gx, gy, 1}; blockDim = {bx, 1, 1};
    for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x)
            for (unsigned t = 0; t < bx; ++t) { blockIdx = {x, y, 0}; threadIdx = {t, 0, 0}; f(); }
}
"""
_SIGNATURE = re.compile(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)")
CTYPES = (("float", "f32"), ("double", "f64"))


def launchers(source):
    """extern "C" name_f32 / name_f64 (grid.x, grid.y, block.x, the kernel's own parameters) per kernel."""
    out = []
    for name, params in _SIGNATURE.findall(source):
        params = " ".join(params.split())
        names = [re.findall(r"\w+", p)[-1] for p in params.split(",")]
        for ctype, suffix in CTYPES:
            typed = re.sub(r"\bT\b", ctype, params)
            out.append(f'extern "C" void {name}_{suffix}(unsigned emu_gx, unsigned emu_gy, unsigned emu_bx, {typed}) '
                       f'{{ emu_launch(emu_gx, emu_gy, emu_bx, [&] {{ {name}<{ctype}>({", ".join(names)}); }}); }}')
    return out


def compile_families(folder):
    """Compile every family's CUDA source as C++ (in parallel); {kernel name: ctypes library}."""
    jobs = {}
    for family in kernels.FAMILIES:
        source = _cuda.source(family)
        cpp, lib = folder / f"{family}.cpp", folder / f"{family}.so"
        cpp.write_text(HEADER + source + "\n" + "\n".join(launchers(source)) + "\n")
        jobs[family] = (lib, subprocess.Popen([CXX, "-std=c++14", "-O1", "-shared", "-fPIC", "-o", str(lib), str(cpp)],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    libs = {}
    for family, (lib, proc) in jobs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, f"cuda/{family}.cu does not compile as C++:\n{err[-4000:]}"
        handle = ctypes.CDLL(str(lib))
        for name in _cuda.kernel_names(family):
            libs[name] = handle
    return libs


def _ctype_arg(a):
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous, "a kernel was handed a non-contiguous array"
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.int32):
        return ctypes.c_int(int(a))
    if isinstance(a, np.int64):
        return ctypes.c_longlong(int(a))
    if isinstance(a, np.float32):
        return ctypes.c_float(float(a))
    if isinstance(a, np.float64):
        return ctypes.c_double(float(a))
    raise TypeError(f"kernel argument of unexpected type {type(a).__name__}: pass NumPy scalars of exact width")


class _FakeFunction:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, grid, block, args):
        assert block[1] == block[2] == 1 and grid[2] == 1
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]),
                *[_ctype_arg(a) for a in args])


def fake_cupy(libs):
    """A stand-in for the cupy module: NumPy's array functions and a RawModule of the compiled kernels."""
    cp = types.ModuleType("cupy")
    for name in ("empty", "zeros", "empty_like", "ascontiguousarray", "broadcast_to", "float32", "float64", "int32"):
        setattr(cp, name, getattr(np, name))

    class RawModule:
        def __init__(self, code, options=(), name_expressions=()):
            self.names = set(name_expressions)

        def get_function(self, expr):
            assert expr in self.names, f"{expr} was not registered as a name expression"
            kernel, ctype = expr[:-1].split("<")
            return _FakeFunction(getattr(libs[kernel], f"{kernel}_{'f32' if ctype == 'float' else 'f64'}"))

    cp.RawModule = RawModule
    return cp


def install(monkeypatch, libs):
    """Route minidl.kernels' CUDA launchers to the emulated kernels, with tiny grids, for one test."""
    monkeypatch.setattr(_cuda, "cp", fake_cupy(libs))
    monkeypatch.setattr(_cuda, "_modules", {})
    monkeypatch.setattr(_cuda, "THREADS", 8)
    monkeypatch.setattr(_cuda, "MAX_BLOCKS", 3)
    monkeypatch.setattr(_cuda, "MAX_GRID_Y", 2)
