"""Every op on the GPU equals the CPU: forward and backward, float32 (rel. err <= 1e-4) and float64
(<= 1e-10); float64 gradient checks on the GPU; the GPU kernels against the CPU kernels directly.

Marked ``gpu``: skipped (by tests/conftest.py) where CuPy or a usable GPU is missing.
Relative error here is norm-wise: ||gpu - cpu|| / ||cpu||.
"""
import numpy as np
import pytest

import minidl as md
from minidl import backend
from minidl import functional as F
from minidl.functional.conv import conv2d
from minidl.functional.norm import batch_norm, local_response_norm
from minidl.functional.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d

pytestmark = pytest.mark.gpu

TOL = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def tf32_off():
    md.set_tf32(False)  # the comparisons below are for true float32 GEMMs
    yield
    md.set_tf32(False)


def rel_err(a, b):
    a, b = backend.as_numpy(a).astype(np.float64), backend.as_numpy(b).astype(np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    denom = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else float(np.linalg.norm(a - b))


def run_on(device, fn, arrays, gy, dtype):
    xs = [md.tensor(a.astype(dtype), requires_grad=True, device=device) for a in arrays]
    y = fn(*xs)
    assert y.device == device and y.dtype == dtype, f"{device}: output {y.device} {y.dtype}"
    y.backward(md.tensor(gy.astype(dtype), device=device))
    grads = []
    for x in xs:
        assert x.grad is None or backend.device_of(x.grad) == device
        grads.append(None if x.grad is None else backend.as_numpy(x.grad))
    return y.numpy(), grads


def check_op(fn, shapes, dtype, seed=0, make=None):
    rng = np.random.default_rng(seed)
    arrays = make(rng) if make else [rng.standard_normal(s) for s in shapes]
    # the output shape decides gy: run the CPU forward once without backward to learn it
    with md.no_grad():
        out_shape = fn(*[md.tensor(a.astype(dtype)) for a in arrays]).shape
    gy = rng.standard_normal(out_shape)
    y_cpu, g_cpu = run_on("cpu", fn, arrays, gy, dtype)
    y_gpu, g_gpu = run_on("cuda", fn, arrays, gy, dtype)
    tol = TOL[dtype]
    assert rel_err(y_gpu, y_cpu) <= tol, f"forward: rel err {rel_err(y_gpu, y_cpu):.2e} > {tol}"
    for i, (a, b) in enumerate(zip(g_gpu, g_cpu)):
        assert (a is None) == (b is None)
        if a is not None:
            assert rel_err(a, b) <= tol, f"grad of input {i}: rel err {rel_err(a, b):.2e} > {tol}"


CONV = [  # x shape, w shape, stride, padding, groups
    ((2, 3, 19, 17), (8, 3, 11, 11), 4, 2, 1),     # AlexNet conv1-like
    ((2, 4, 9, 9), (6, 2, 5, 5), 1, 2, 2),          # grouped (AlexNet's towers)
    ((3, 5, 8, 8), (7, 5, 3, 3), 1, 1, 1),          # VGG-like
    ((2, 6, 7, 7), (4, 6, 1, 1), 2, 0, 1),          # ResNet downsampling 1x1 stride 2
    ((3, 8, 12, 12), (12, 8, 1, 1), 1, 0, 1),       # 1x1 stride 1, P >= 128: batched matmul, no im2col
    ((2, 16, 12, 12), (8, 16, 1, 1), 1, 0, 1),      # the same with C > K (gy transposed for gW)
    ((2, 300, 8, 16), (300, 300, 1, 1), 1, 0, 1),   # the same, K*C > (K+C)*P: gW from transposed copies
    ((3, 8, 5, 6), (12, 8, 1, 1), 1, 0, 1),         # 1x1, P < 128: im2col + one GEMM
    ((2, 6, 2, 1), (8, 3, 1, 1), 1, 0, 2),          # 1x1 grouped: im2col
    ((1, 3, 10, 12), (5, 3, 3, 5), (2, 1), (1, 2), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,stride,padding,groups", CONV)
def test_conv2d(xs, ws, stride, padding, groups, dtype):
    check_op(lambda x, w, b: conv2d(x, w, b, stride=stride, padding=padding, groups=groups),
             [xs, ws, (ws[0],)], dtype)


POOL = [(3, 2, 0, False), (2, 2, 0, False), (3, 1, 1, True), (5, 3, 2, True), ((3, 2), (2, 1), (1, 0), False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p,ceil_mode", POOL)
def test_max_and_avg_pool(k, s, p, ceil_mode, dtype):
    check_op(lambda x: max_pool2d(x, k, s, p, ceil_mode), [(2, 3, 13, 11)], dtype)
    check_op(lambda x: avg_pool2d(x, k, s, p, ceil_mode), [(2, 3, 13, 11)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [(1, 1), (2, 3), (4, 4)])
def test_adaptive_avg_pool(out, dtype):
    check_op(lambda x: adaptive_avg_pool2d(x, out), [(2, 3, 8, 9)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 2.0), (4, 1e-2, 0.75, 1.0), (3, 0.1, 0.5, 1.0)])
def test_local_response_norm(size, alpha, beta, k, dtype):
    check_op(lambda x: local_response_norm(x, size, alpha, beta, k), [(2, 9, 5, 4)], dtype,
             make=lambda rng: [3 * rng.standard_normal((2, 9, 5, 4))])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_and_its_buffers(training, dtype):
    rng = np.random.default_rng(1)
    mean0, var0 = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    buffers = {}

    def fn(x, w, b):
        dev = x.device
        rm = backend.to_device(mean0.astype(dtype), dev)
        rv = backend.to_device(var0.astype(dtype), dev)
        buffers[dev] = (rm, rv)
        return batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)

    check_op(fn, [(3, 4, 5, 5), (4,), (4,)], dtype)
    for a, b in zip(buffers["cuda"], buffers["cpu"]):
        assert rel_err(a, b) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_activations_and_losses(dtype):
    check_op(lambda x, w, b: F.linear(x, w, b), [(5, 7), (3, 7), (3,)], dtype)
    for f in (F.relu, F.tanh, F.sigmoid, lambda x: F.softmax(x, axis=1), lambda x: F.log_softmax(x, axis=0)):
        check_op(f, [(4, 6)], dtype)
    target = np.array([0, 2, 1, 2, 0])
    check_op(lambda x: F.cross_entropy(x, target), [(5, 3)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_math_and_shape_ops(dtype):
    check_op(lambda a, b: (a + b) * a - b / (b * b + 1) + a ** 2, [(3, 4), (4,)], dtype)
    check_op(lambda a: (a * a + 1).log() + (a * 0.1).exp() + (a * a + 1).sqrt(), [(5, 2)], dtype)
    check_op(lambda a, b: a @ b, [(2, 3, 4), (4, 5)], dtype)
    check_op(lambda a: a.sum(axis=1) + a.mean(axis=1) + a.max(axis=1), [(3, 5)], dtype)
    check_op(lambda a: a.reshape(6, 2).transpose() * 2, [(3, 4)], dtype)
    check_op(lambda a: a[np.array([0, 2, 0, 0])] * 3, [(3, 4)], dtype)   # repeated rows: scatter-add backward
    check_op(lambda a: a[1:, ::2], [(3, 4)], dtype)
    check_op(lambda a, b: F.concat([a, b, a], axis=1), [(2, 3, 2), (2, 1, 2)], dtype)
    check_op(lambda a: F.flatten(a).broadcast_to((4, 2, 12)), [(2, 3, 2, 2)], dtype)


def test_dtypes_are_kept_on_the_gpu():
    for dtype in DTYPES:
        x = md.tensor(np.ones((2, 3, 8, 8), dtype=dtype), device="cuda")
        w = md.tensor(np.ones((4, 3, 3, 3), dtype=dtype), device="cuda")
        for y in (conv2d(x, w), max_pool2d(x, 2), avg_pool2d(x, 2), local_response_norm(x),
                  F.dropout(x, 0.5), F.relu(x)):
            assert y.dtype == dtype and y.device == "cuda"


def test_dropout_on_the_gpu_is_seeded_and_inverted():
    import cupy as cp
    x = md.tensor(np.ones((400, 500), dtype=np.float32), requires_grad=True, device="cuda")
    md.manual_seed(3)
    y1 = F.dropout(x, 0.25)
    assert isinstance(y1.data, cp.ndarray)
    values = set(np.unique(y1.numpy()).tolist())
    assert values == {0.0, np.float32(1 / 0.75)}
    assert abs(float((y1.data == 0).mean()) - 0.25) < 0.01
    y1.backward(md.tensor(np.full((400, 500), 2, dtype=np.float32), device="cuda"))
    np.testing.assert_array_equal(x.grad.get(), 2 * y1.numpy())
    md.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.25).numpy(), y1.numpy())   # same seed, same mask
    assert not np.array_equal(F.dropout(x, 0.25).numpy(), y1.numpy())       # the stream moves on
    assert F.dropout(x, 0.25, training=False) is x


def test_to_device_is_differentiable_both_ways():
    x = md.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, dtype="float64")
    y = (x.to("cuda") * 3).to("cpu").sum()
    y.backward()
    assert x.grad is not None and backend.device_of(x.grad) == "cpu"
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 3.0))


# ---- float64 gradient checks on the GPU -----------------------------------------------------------

def _gpu64(rng, shape, scale=1.0):
    return md.tensor(scale * rng.standard_normal(shape), requires_grad=True, dtype="float64", device="cuda")


def test_gradcheck_on_the_gpu():
    rng = np.random.default_rng(5)
    x, w, b = _gpu64(rng, (2, 4, 6, 6)), _gpu64(rng, (4, 2, 3, 3)), _gpu64(rng, (4,))
    assert md.gradcheck(lambda x, w, b: conv2d(x, w, b, stride=2, padding=1, groups=2), x, w, b)
    xp = md.tensor(rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 10.0, requires_grad=True,
                   dtype="float64", device="cuda")   # distinct values: no argmax ties
    assert md.gradcheck(lambda x: max_pool2d(x, 3, 2, 1, True), xp)
    assert md.gradcheck(lambda x: avg_pool2d(x, 3, 2, 1, True), _gpu64(rng, (1, 2, 7, 6)))
    assert md.gradcheck(lambda x: local_response_norm(x, 3, 0.1, 0.75, 1.0), _gpu64(rng, (1, 5, 3, 3), 2.0))
    assert md.gradcheck(lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
                        _gpu64(rng, (3, 2, 3, 3)), _gpu64(rng, (2,)), _gpu64(rng, (2,)))
    assert md.gradcheck(lambda x: F.cross_entropy(x, np.array([1, 0, 2])), _gpu64(rng, (3, 4)))


def test_gradcheck_on_the_gpu_catches_a_wrong_backward():
    class Wrong(md.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, gy):
            return gy * self.x  # should be 2x

    with pytest.raises(md.GradcheckError):
        md.gradcheck(lambda x: Wrong()(x), _gpu64(np.random.default_rng(0), (3,)))


# ---- the raw kernels: GPU against CPU, larger sizes than the emulated CPU test --------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_gpu_equal_cpu(dtype):
    import cupy as cp
    from minidl import kernels
    from minidl.kernels._geometry import window
    from minidl.kernels.lrn import LRNParams
    kernels.compile_all()
    cpu, gpu = kernels.get("numba"), kernels.get("cuda")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 16, 31, 29)).astype(dtype)
    xg = cp.asarray(x)
    tol = TOL[dtype]
    for geometry in [(3, 3, 1, 1, 1, 1), (11, 11, 4, 4, 2, 2), (1, 1, 2, 2, 0, 0), (5, 3, 2, 1, 2, 1)]:
        win = window(x.shape, *geometry)
        col = cpu.im2col(x, win)
        colg = gpu.im2col(xg, win)
        np.testing.assert_array_equal(colg.get(), col)
        g = rng.standard_normal(col.shape).astype(dtype)
        assert rel_err(gpu.col2im(cp.asarray(g), x.shape, win), cpu.col2im(g, x.shape, win)) <= tol
    for geometry in [(3, 3, 2, 2, 0, 0, 15, 14), (3, 3, 2, 2, 1, 1, 16, 15),
                     (2, 2, 2, 2, 0, 0, 15, 14), (3, 3, 1, 1, 1, 1, 31, 29)]:
        win = window(x.shape, *geometry)
        y, sw = cpu.max_pool_forward(x, win)
        yg, swg = gpu.max_pool_forward(xg, win)
        np.testing.assert_array_equal(yg.get(), y)
        np.testing.assert_array_equal(swg.get(), sw)
        gy = rng.standard_normal(y.shape).astype(dtype)
        gx = gpu.max_pool_backward(cp.asarray(gy), swg, win)
        assert rel_err(gx, cpu.max_pool_backward(gy, sw, win)) <= tol
        np.testing.assert_array_equal(gpu.max_pool_backward(cp.asarray(gy), swg, win).get(), gx.get())  # bit for bit
        assert rel_err(gpu.avg_pool_forward(xg, win)[0], cpu.avg_pool_forward(x, win)[0]) <= tol
        assert rel_err(gpu.avg_pool_backward(cp.asarray(gy), None, win), cpu.avg_pool_backward(gy, None, win)) <= tol
    params = LRNParams(5, 1e-3, 0.75, 2.0)
    y, saved = cpu.lrn_forward(x, params)
    yg, savedg = gpu.lrn_forward(xg, params)
    assert rel_err(yg, y) <= tol and rel_err(savedg[2], saved[2].reshape(x.shape)) <= tol
    gy = rng.standard_normal(x.shape).astype(dtype)
    assert rel_err(gpu.lrn_backward(cp.asarray(gy), savedg, params), cpu.lrn_backward(gy, saved, params)) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_kernels_gpu_equal_cpu(dtype):
    """ReLU (bit mask), SGD and batch norm kernels at sizes that fill many blocks."""
    import cupy as cp
    from minidl import kernels
    from minidl.kernels.batchnorm import BNParams
    cpu, gpu = kernels.get("numba"), kernels.get("cuda")
    rng = np.random.default_rng(8)
    tol = TOL[dtype]
    x = rng.standard_normal((5, 7, 31, 29)).astype(dtype)        # 31465 elements: a partial last mask byte
    y, mask = cpu.relu_forward(x)
    yg, bits = gpu.relu_forward(cp.asarray(x))
    np.testing.assert_array_equal(yg.get(), y)
    unpacked = np.unpackbits(bits.get(), bitorder="little").reshape(bits.size, 8).T.ravel()   # bit j of byte q:
    np.testing.assert_array_equal(unpacked[:x.size], mask.ravel())                            # element q + j*Q
    gy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(gpu.relu_backward(cp.asarray(gy), bits).get(), cpu.relu_backward(gy, mask))
    p = rng.standard_normal((1000, 37)).astype(dtype)
    pg, v, vg = cp.asarray(p), None, None
    for _ in range(3):
        g = rng.standard_normal(p.shape).astype(dtype)
        v = cpu.sgd_update(p, g, v, 0.1, 0.9, 5e-4, True)
        vg = gpu.sgd_update(pg, cp.asarray(g), vg, 0.1, 0.9, 5e-4, True)
        assert rel_err(pg, p) <= tol and rel_err(vg, v) <= tol
    for shape in [(64, 8, 3136), (16, 300, 49), (32, 5, 1)]:
        x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
        w, b = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
        rm, rv = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
        rmg, rvg = cp.asarray(rm), cp.asarray(rv)
        for training in (True, False):
            params = BNParams(training, 0.1, 1e-5)
            y, saved = cpu.batch_norm_forward(x, w, b, rm, rv, params)
            yg, savedg = gpu.batch_norm_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), rmg, rvg, params)
            assert rel_err(yg, y) <= tol and rel_err(rmg, rm) <= tol and rel_err(rvg, rv) <= tol, (shape, training)
            gy = rng.standard_normal(shape).astype(dtype)
            ref = cpu.batch_norm_backward(gy, saved)
            got = gpu.batch_norm_backward(cp.asarray(gy), savedg)
            again = gpu.batch_norm_backward(cp.asarray(gy), savedg)
            for name, a, r, a2 in zip(("gx", "gw", "gb"), got, ref, again):
                assert rel_err(a, r) <= tol, (shape, training, name, rel_err(a, r))
                np.testing.assert_array_equal(a.get(), a2.get())   # no atomics: the same bits every run


# ---- devices, host memory, TF32, errors -------------------------------------------------------------

def test_numpy_returns_host_memory_and_a_copy():
    t = md.tensor(np.arange(4.0, dtype=np.float32), device="cuda")
    host = t.numpy()
    assert type(host) is np.ndarray
    host[0] = 100
    assert float(t.data[0]) == 0.0
    assert t.to("cpu").device == "cpu" and type(t.to("cpu").data) is np.ndarray


def test_op_on_two_devices_names_both():
    with pytest.raises(RuntimeError, match=r"Add: inputs are on different devices \(input 0 on cuda, input 1 on cpu\)"):
        md.tensor([1.0], device="cuda") + md.tensor([1.0])


def test_out_of_memory_names_the_op_and_size():
    x = md.tensor(np.ones(1, dtype=np.float32), device="cuda")
    huge = F.broadcast_to(x, (2 ** 18, 2 ** 18))   # a view: no memory yet
    with pytest.raises(MemoryError, match=r"^Mul forward: out of GPU memory asking for 274,877,906,944 bytes"):
        huge * 2.0


def test_tf32_is_off_by_default_and_switchable():
    import cupy as cp
    if int(cp.cuda.Device().compute_capability) < 80:
        pytest.skip("TF32 needs compute capability 8.0 or newer")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((512, 4096)), rng.standard_normal((4096, 512))
    ref = a @ b
    ag, bg = cp.asarray(a, dtype=cp.float32), cp.asarray(b, dtype=cp.float32)
    assert not backend.tf32_enabled()
    err_fp32 = rel_err(ag @ bg, ref)
    md.set_tf32(True)
    assert backend.tf32_enabled()
    err_tf32 = rel_err(ag @ bg, ref)
    md.set_tf32(False)
    err_back = rel_err(ag @ bg, ref)
    assert err_fp32 < 1e-5 and err_back < 1e-5, (err_fp32, err_back)
    assert 3e-5 < err_tf32 < 3e-3, err_tf32   # 10 mantissa bits: about 1e-4 .. 1e-3
