"""The CUDA source of minidl/kernels/gpu.py, checked on the CPU: no GPU, no CuPy needed.

The kernels are compiled as plain C++ by the host compiler, with the CUDA built-ins (blockIdx,
threadIdx, atomicAdd, ...) emulated by running every thread of the launch grid one after the
other. gpu.py's own Python wrappers are loaded against a small stand-in for ``cupy`` (NumPy
arrays, and a RawModule whose kernels are the host-compiled ones), with tiny blocks and grids so
that every grid-stride loop wraps around. The results must equal minidl.kernels.reference.

This catches indexing mistakes in the CUDA C and argument-order mistakes in the wrappers; what it
cannot catch (NVRTC compile errors, races, real atomics) the tests in tests/gpu check on a GPU.
"""
import ast
import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from minidl.kernels import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_PY = os.path.join(ROOT, "minidl", "kernels", "gpu.py")
CXX = shutil.which("g++") or shutil.which("clang++")

pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler to emulate the CUDA kernels: apt install g++ (or clang++)")

_HEADER = r"""
#include <algorithm>
#include <cmath>
struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 blockIdx, blockDim, gridDim, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
using std::min; using std::max; using std::sqrt; using std::pow;
template <typename T> T atomicAdd(T* a, T v) { T old = *a; *a += v; return old; }
template <typename F> void emu_launch(unsigned gx, unsigned gy, unsigned bx, F f) {
    gridDim = {gx, gy, 1}; blockDim = {bx, 1, 1};
    for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x)
            for (unsigned t = 0; t < bx; ++t) { blockIdx = {x, y, 0}; threadIdx = {t, 0, 0}; f(); }
}
"""

# One extern "C" launcher per kernel and dtype: (grid.x, grid.y, block.x, kernel arguments...).
_SIGNATURES = {
    "im2col_kernel": ("const T* a0, T* a1, int a2, int a3, int a4, int a5, int a6, int a7, int a8, int a9, "
                      "int a10, int a11, int a12, int a13", 14),
    "col2im_kernel": ("const T* a0, T* a1, int a2, int a3, int a4, int a5, int a6, int a7, int a8, int a9, "
                      "int a10, int a11, int a12, int a13", 14),
    "max_pool_fwd_kernel": ("const T* a0, T* a1, int* a2, long long a3, int a4, int a5, int a6, int a7, "
                            "int a8, int a9, int a10, int a11, int a12, int a13", 14),
    "max_pool_bwd_kernel": ("const T* a0, const int* a1, T* a2, long long a3, int a4, long long a5", 6),
    "avg_pool_fwd_kernel": ("const T* a0, T* a1, long long a2, int a3, int a4, int a5, int a6, int a7, "
                            "int a8, int a9, int a10, int a11, int a12", 13),
    "avg_pool_bwd_kernel": ("const T* a0, T* a1, long long a2, int a3, int a4, int a5, int a6, int a7, "
                            "int a8, int a9, int a10, int a11, int a12", 13),
    "lrn_fwd_kernel": ("const T* a0, T* a1, T* a2, long long a3, int a4, long long a5, int a6, T a7, T a8, "
                       "T a9", 10),
    "lrn_bwd_kernel": ("const T* a0, const T* a1, const T* a2, const T* a3, T* a4, long long a5, int a6, "
                       "long long a7, int a8, T a9, T a10", 11),
    "relu_fwd_kernel": ("const T* a0, T* a1, unsigned char* a2, long long a3", 4),
    "relu_bwd_kernel": ("const unsigned char* a0, const T* a1, T* a2, long long a3", 4),
    "sgd_kernel": ("T* a0, const T* a1, T* a2, long long a3, T a4, T a5, T a6, int a7", 8),
    "bn_sums_kernel": ("const T* a0, const T* a1, const T* a2, long long a3, double* a4, int a5, int a6, int a7, "
                       "long long a8", 9),
    "bn_stats_kernel": ("const double* a0, const T* a1, long long a2, T* a3, T* a4, T* a5, int a6, long long a7, "
                        "double a8, double a9, int a10, int a11", 12),
    "bn_fwd_kernel": ("const T* a0, T* a1, const T* a2, const T* a3, const T* a4, int a5, int a6, int a7, int a8, "
                      "long long a9", 10),
    "bn_bwd_stats_kernel": ("const double* a0, const T* a1, const T* a2, int a3, T* a4, T* a5, T* a6, int a7, "
                            "long long a8, int a9", 10),
    "bn_bwd_kernel": ("const T* a0, const T* a1, const T* a2, const T* a3, T* a4, int a5, int a6, long long a7", 8),
}


def _gpu_constants():
    """_SOURCE and _KERNELS read from gpu.py without importing it (it imports cupy)."""
    ns = {}
    for node in ast.parse(open(GPU_PY).read()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("_SOURCE", "_KERNELS") for t in node.targets):
            exec(compile(ast.Module([node], []), GPU_PY, "exec"), ns)
    return ns["_SOURCE"], ns["_KERNELS"]


@pytest.fixture(scope="module")
def emulated_lib(tmp_path_factory):
    source, names = _gpu_constants()
    assert set(names) == set(_SIGNATURES), "a kernel was added to gpu.py: add its launcher here"
    wrappers = []
    for name, (params, nargs) in _SIGNATURES.items():
        for ctype, suffix in (("float", "f32"), ("double", "f64")):
            p = params.replace("T", ctype)
            args = ", ".join(f"a{i}" for i in range(nargs))
            wrappers.append(f'extern "C" void {name}_{suffix}(unsigned gx, unsigned gy, unsigned bx, {p}) '
                            f'{{ emu_launch(gx, gy, bx, [&] {{ {name}<{ctype}>({args}); }}); }}')
    folder = tmp_path_factory.mktemp("cuda_emu")
    cpp, lib = folder / "kernels.cpp", folder / "kernels.so"
    cpp.write_text(_HEADER + source + "\n" + "\n".join(wrappers) + "\n")
    result = subprocess.run([CXX, "-std=c++14", "-O1", "-shared", "-fPIC", "-o", str(lib), str(cpp)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"the CUDA source does not compile as C++:\n{result.stderr[-4000:]}"
    return ctypes.CDLL(str(lib))


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
    def __init__(self, fn, name):
        self.fn, self.name = fn, name

    def __call__(self, grid, block, args):
        assert block[1] == block[2] == 1 and grid[2] == 1
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]),
                *[_ctype_arg(a) for a in args])


def _fake_cupy(lib):
    cp = types.ModuleType("cupy")
    for name in ("empty", "zeros", "empty_like", "ascontiguousarray", "float32", "float64", "int32"):
        setattr(cp, name, getattr(np, name))

    class RawModule:
        def __init__(self, code, options=(), name_expressions=()):
            self.names = set(name_expressions)

        def get_function(self, expr):
            assert expr in self.names, f"{expr} was not registered as a name expression"
            kernel, ctype = expr[:-1].split("<")
            return _FakeFunction(getattr(lib, f"{kernel}_{'f32' if ctype == 'float' else 'f64'}"), expr)

    cp.RawModule = RawModule
    return cp


@pytest.fixture(scope="module")
def gpu(emulated_lib):
    """minidl/kernels/gpu.py loaded against the fake cupy, with tiny grids so grid-stride loops wrap."""
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = _fake_cupy(emulated_lib)
    try:
        spec = importlib.util.spec_from_file_location("minidl_kernels_gpu_emulated", GPU_PY)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved
    mod._THREADS, mod._MAX_BLOCKS, mod._MAX_GRID_Y = 8, 3, 2
    return mod


DTYPES = [np.float32, np.float64]
CONV = [  # (N, C, H, W, kh, kw, sh, sw, ph, pw)
    (2, 3, 7, 6, 3, 3, 1, 1, 1, 1),
    (1, 2, 11, 13, 5, 3, 2, 3, 2, 1),
    (2, 1, 9, 9, 4, 4, 4, 4, 0, 0),
    (1, 3, 12, 10, 11, 5, 4, 2, 2, 0),   # AlexNet-like 11-wide kernel, stride 4
    (3, 2, 5, 5, 1, 1, 1, 1, 0, 0),
    (1, 1, 6, 7, 2, 3, 3, 1, 1, 1),      # stride larger than kernel: pixels no window covers
]
POOL = [  # (N, C, H, W, kh, kw, sh, sw, ph, pw, ceil_mode)
    (2, 3, 7, 7, 3, 3, 2, 2, 0, 0, False),   # AlexNet's overlapping pooling
    (1, 2, 8, 9, 3, 3, 2, 2, 1, 1, True),
    (2, 2, 6, 6, 2, 2, 2, 2, 0, 0, False),
    (1, 3, 10, 7, 5, 3, 3, 2, 2, 1, True),
    (1, 1, 5, 6, 3, 2, 1, 3, 1, 0, False),
]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _pool_size(size, k, s, p, ceil_mode):
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV)
def test_im2col_col2im(gpu, case, dtype):
    n, c, h, w, kh, kw, sh, sw, ph, pw = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    col = gpu.im2col(x, kh, kw, sh, sw, ph, pw)
    ref = reference.im2col(x, kh, kw, sh, sw, ph, pw)
    assert col.shape == ref.shape and col.dtype == dtype
    np.testing.assert_array_equal(col, ref)
    g = rng.standard_normal(col.shape).astype(dtype)
    gx = gpu.col2im(g, x.shape, kh, kw, sh, sw, ph, pw)
    np.testing.assert_allclose(gx, reference.col2im(g, x.shape, kh, kw, sh, sw, ph, pw), **_tol(dtype))
    out = np.full(x.shape, np.nan, dtype=dtype)  # every element written, into the given buffer
    assert gpu.col2im(g, x.shape, kh, kw, sh, sw, ph, pw, out=out) is out
    np.testing.assert_allclose(out, gx, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL)
def test_pooling(gpu, case, dtype):
    n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode = case
    oh, ow = _pool_size(h, kh, sh, ph, ceil_mode), _pool_size(w, kw, sw, pw, ceil_mode)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie: the first one wins on both sides
    args = (kh, kw, sh, sw, ph, pw, oh, ow)
    y, am = gpu.max_pool_forward(x, *args)
    ry, ram = reference.max_pool_forward(x, *args)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(am, ram)
    assert am.dtype == np.int32
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(gpu.max_pool_backward(gy, am, x.shape),
                               reference.max_pool_backward(gy, ram, x.shape), **_tol(dtype))
    np.testing.assert_allclose(gpu.avg_pool_forward(x, *args), reference.avg_pool_forward(x, *args), **_tol(dtype))
    np.testing.assert_allclose(gpu.avg_pool_backward(gy, x.shape, kh, kw, sh, sw, ph, pw),
                               reference.avg_pool_backward(gy, x.shape, kh, kw, sh, sw, ph, pw), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-2, 0.75, 2.0), (4, 3e-2, 0.6, 1.0), (1, 0.1, 0.75, 1.5),
                                               (3, 0.5, 1.0, 0.5)])
def test_lrn(gpu, size, alpha, beta, k, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 3, 4)).astype(dtype)
    y, scale = gpu.lrn_forward(x, size, alpha, beta, k)
    ry, rscale = reference.lrn_forward(x, size, alpha, beta, k)
    np.testing.assert_allclose(scale, rscale, **_tol(dtype))
    np.testing.assert_allclose(y, ry, **_tol(dtype))
    gy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(gpu.lrn_backward(x, y, scale, gy, size, alpha, beta, k),
                               reference.lrn_backward(x, ry, rscale, gy, size, alpha, beta, k), **_tol(dtype))


def test_non_contiguous_input_is_made_contiguous(gpu):
    x = np.random.default_rng(4).standard_normal((3, 2, 6, 5)).transpose(1, 0, 2, 3)  # (2, 3, 6, 5), a view
    np.testing.assert_array_equal(gpu.im2col(x, 3, 3, 1, 1, 1, 1), reference.im2col(x, 3, 3, 1, 1, 1, 1))


def test_unsupported_dtype_is_named(gpu):
    with pytest.raises(TypeError, match="float32 and float64.*int64"):
        gpu.im2col(np.ones((1, 1, 3, 3), dtype=np.int64), 2, 2, 1, 1, 0, 0)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 8), (7,), (1, 3, 3, 3)])   # sizes 60, 16, 7, 27: partial last bytes
def test_relu(gpu, shape):
    rng = np.random.default_rng(6)
    for dtype in DTYPES:
        x = rng.standard_normal(shape).astype(dtype)
        x.flat[0] = 0.0
        x.flat[-1] = np.nan
        y, bits = gpu.relu_forward(x)
        y_ref, mask = reference.relu_forward(x)
        assert y.dtype == dtype and bits.dtype == np.uint8 and bits.size == (x.size + 7) // 8
        np.testing.assert_array_equal(y, y_ref)   # NaN stays NaN in both
        q = bits.size   # bit j of byte q is element q + j * Q
        np.testing.assert_array_equal(np.unpackbits(bits, bitorder="little").reshape(q, 8).T.ravel()[:x.size],
                                      mask.ravel())
        gy = rng.standard_normal(shape).astype(dtype)
        gx = gpu.relu_backward(bits, gy)
        assert gx.dtype == dtype and gx.shape == shape
        np.testing.assert_array_equal(gx, reference.relu_backward(mask, gy))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,weight_decay,nesterov", [(0.0, 0.0, False), (0.0, 1e-2, False),
                                                            (0.9, 5e-4, False), (0.9, 0.0, True), (0.5, 1e-3, True)])
def test_sgd_update(gpu, momentum, weight_decay, nesterov, dtype):
    rng = np.random.default_rng(7)
    p = rng.standard_normal((5, 7)).astype(dtype)
    p_ref, v, v_ref = p.copy(), None, None
    for _ in range(3):   # the first step starts the buffer, the others update it
        g = rng.standard_normal(p.shape).astype(dtype)
        v = gpu.sgd_update(p, g, v, 0.1, momentum, weight_decay, nesterov)
        v_ref = reference.sgd_update(p_ref, g, v_ref, 0.1, momentum, weight_decay, nesterov)
        np.testing.assert_allclose(p, p_ref, **_tol(dtype))
        assert (v is None) == (v_ref is None) == (momentum == 0)
        if v is not None:
            assert v.dtype == dtype
            np.testing.assert_allclose(v, v_ref, **_tol(dtype))


def test_sgd_update_non_contiguous_takes_the_array_path(gpu):
    rng = np.random.default_rng(8)
    p = rng.standard_normal((6, 4)).astype(np.float32)
    view, g = p.T, rng.standard_normal((4, 6)).astype(np.float32)
    before = view.copy()
    v = gpu.sgd_update(view, g, None, 0.1, 0.9, 1e-3, False)   # p.T is updated in place, through p
    np.testing.assert_allclose(v, g + np.float32(1e-3) * before, rtol=1e-6)
    np.testing.assert_allclose(p.T, before - np.float32(0.1) * v, rtol=1e-6)


BN = [(3, 5, 7), (4, 3, 1), (2, 4, 20), (1, 2, 30)]   # (N, C, L): L = 1 is BatchNorm1d's (N, C)


def _bn_tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(gpu, shape, training, affine, dtype):
    n, c, l = shape
    rng = np.random.default_rng(9)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)   # an offset mean: the shifted sums must not cancel
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    rm0, rv0 = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm, rv, rm_ref, rv_ref = rm0.copy(), rv0.copy(), rm0.copy(), rv0.copy()
    y, saved = gpu.batch_norm_forward(x, w, b, rm, rv, training, 0.1, 1e-5)
    y_ref, saved_ref = reference.batch_norm_forward(x, w, b, rm_ref, rv_ref, training, 0.1, 1e-5)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, y_ref, **_bn_tol(dtype))
    np.testing.assert_allclose(rm, rm_ref, **_bn_tol(dtype))
    np.testing.assert_allclose(rv, rv_ref, **_bn_tol(dtype))
    gy = rng.standard_normal(shape).astype(dtype)
    for need_gb in (True, False):
        got = gpu.batch_norm_backward(gy, saved, w, training, need_gb)
        ref = reference.batch_norm_backward(gy, saved_ref, w, training, need_gb)
        for name, a, r in zip(("gx", "gw", "gb"), got, ref):
            assert (a is None) == (r is None), name
            if a is not None:
                assert a.dtype == dtype, name
                np.testing.assert_allclose(a, r, err_msg=name, **_bn_tol(dtype))


def test_batch_norm_without_buffers_and_with_float64_buffers(gpu):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    y, _ = gpu.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    np.testing.assert_allclose(y, reference.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)[0],
                               **_bn_tol(np.float32))
    rm, rv = np.zeros(3), np.ones(3)               # float64 buffers, float32 input: the array-expression update
    rm_ref, rv_ref = rm.copy(), rv.copy()
    gpu.batch_norm_forward(x, None, None, rm, rv, True, 0.1, 1e-5)
    reference.batch_norm_forward(x, None, None, rm_ref, rv_ref, True, 0.1, 1e-5)
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-5, atol=1e-7)
