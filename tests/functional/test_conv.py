"""conv2d: float64 gradient checks over a grid, a direct-loop reference, PyTorch, chunking, errors."""
import itertools

import numpy as np
import pytest

import minidl as md
from minidl import functional as F
from minidl import kernels
from minidl.kernels import conv as kernel_conv, workspace


def _conv_loops(x, w, b, stride, padding, groups):
    """The definition, one output element at a time: slow and obvious."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, K, oh, ow), dtype=np.float64)
    Kg = K // groups
    for n, k, i, j in itertools.product(range(N), range(K), range(oh), range(ow)):
        g = k // Kg
        window = xp[n, g * Cg:(g + 1) * Cg, i * sh:i * sh + kh, j * sw:j * sw + kw]
        y[n, k, i, j] = (window * w[k]).sum() + (b[k] if b is not None else 0.0)
    return y


def _case(rng, n, c, h, w, k_out, kernel, groups, dtype=np.float64):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k_out, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(k_out).astype(dtype)
    return x, wt, b


# Every kernel size meets every stride; padding, groups and bias rotate through their values so
# that each appears many times. The input is the smallest odd size that fits the kernel (>= 3),
# plus one, so the last window is partial for stride > 1 — small inputs keep each check fast.
GRID = []
for idx, (kernel, stride) in enumerate(itertools.product((1, 3, 5, 7, 11), (1, 2, 4))):
    padding = idx % 4
    groups = (1, 2, 4)[idx % 3]
    with_bias = idx % 2 == 0
    size = max(kernel - 2 * padding, 3) | 1
    GRID.append((kernel, stride, padding, groups, with_bias, size, size + 2))


@pytest.mark.parametrize("kernel,stride,padding,groups,with_bias,h,w", GRID)
def test_gradcheck_grid(kernel, stride, padding, groups, with_bias, h, w, device):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + padding)
    x, wt, b = _case(rng, 2, 4, h, w, 4, kernel, groups)
    if kernel == 11:  # keep the numerical gradient cheap: fewer weights for the biggest kernel
        x, wt, b = _case(rng, 1, groups, h, w, groups, kernel, groups)
    inputs = [md.tensor(x, requires_grad=True, device=device), md.tensor(wt, requires_grad=True, device=device)]
    if with_bias:
        inputs.append(md.tensor(b, requires_grad=True, device=device))
    md.gradcheck(lambda *t: F.conv2d(*t[:2], t[2] if with_bias else None, stride, padding, groups), *inputs)


def test_gradcheck_rectangular_pairs():
    rng = np.random.default_rng(7)
    x, wt, b = _case(rng, 2, 2, 7, 6, 3, (3, 2), 1)
    md.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0)),
                 md.tensor(x, requires_grad=True), md.tensor(wt, requires_grad=True), md.tensor(b, requires_grad=True))


@pytest.mark.parametrize("stride,padding,groups", [(1, 0, 1), (2, 1, 2), (4, 3, 4), ((1, 3), (2, 0), 1)])
def test_matches_direct_loops(stride, padding, groups):
    rng = np.random.default_rng(3)
    x, wt, b = _case(rng, 2, 4, 9, 8, 8, (3, 4), groups)
    y = F.conv2d(md.tensor(x), md.tensor(wt), md.tensor(b), stride, padding, groups)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    np.testing.assert_allclose(y.data, _conv_loops(x, wt, b, pair(stride), pair(padding), groups), rtol=1e-12,
                               atol=1e-12)


def test_float32_in_float32_out_and_gradients():
    rng = np.random.default_rng(4)
    x, wt, b = _case(rng, 2, 4, 7, 7, 6, 3, 2, dtype=np.float32)
    xs = [md.tensor(a, requires_grad=True) for a in (x, wt, b)]
    y = F.conv2d(*xs, stride=1, padding=1, groups=2)
    assert y.dtype == np.float32 and y.shape == (2, 6, 7, 7)
    y.sum().backward()
    assert all(t.grad.dtype == np.float32 and t.grad.shape == t.shape for t in xs)


def test_gradients_only_where_required():
    rng = np.random.default_rng(5)
    x, wt, b = _case(rng, 2, 3, 6, 6, 4, 3, 1)
    w_t, b_t = md.tensor(wt, requires_grad=True), md.tensor(b, requires_grad=True)
    X = md.tensor(x)  # an input image: no gradient wanted, so col2im is skipped
    F.conv2d(X, w_t, b_t, padding=1).sum().backward()
    assert X.grad is None
    np.testing.assert_allclose(b_t.grad, np.full(4, 2 * 6 * 6))  # d sum / d b_k = N * oh * ow
    X = md.tensor(x, requires_grad=True)
    W = md.tensor(wt)
    F.conv2d(X, W).sum().backward()  # no bias: backward returns two gradients
    assert X.grad.shape == x.shape and W.grad is None


def test_two_convs_sharing_the_scratch_arena():
    # both layers reuse the same scratch arena; the chained gradient must still be exact
    rng = np.random.default_rng(6)
    x, w1, b1 = _case(rng, 2, 2, 7, 7, 4, 3, 1)
    _, w2, b2 = _case(rng, 2, 4, 7, 7, 3, 3, 1)
    md.gradcheck(lambda x, w1, w2: F.conv2d(F.conv2d(x, w1, md.tensor(b1), 2, 1), w2, md.tensor(b2), 1, 1),
                 md.tensor(x, requires_grad=True), md.tensor(w1, requires_grad=True), md.tensor(w2, requires_grad=True))


def test_backward_reuses_col_only_while_the_arena_holds_it(monkeypatch):
    cpu = kernels.get("numba")
    calls = []
    real = cpu.im2col
    monkeypatch.setattr(cpu, "im2col", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    rng = np.random.default_rng(11)
    x, w1, b1 = _case(rng, 2, 3, 8, 8, 4, 3, 1, dtype=np.float32)
    _, w2, b2 = _case(rng, 2, 4, 8, 8, 5, 3, 1, dtype=np.float32)
    X, W1, W2 = md.tensor(x), md.tensor(w1, requires_grad=True), md.tensor(w2, requires_grad=True)
    F.conv2d(X, W1, padding=1).sum().backward()
    assert len(calls) == 1  # forward's col was still in the arena for backward
    calls.clear()
    F.conv2d(F.conv2d(X, W1, padding=1), W2, padding=1).sum().backward()
    # forward: 2; backward: the second conv reuses its col, the first one's was overwritten
    assert calls == [(2, 3, 8, 8), (2, 4, 8, 8), (2, 3, 8, 8)]


def _run(x, w, b, stride, padding, groups, gy):
    X, W, B = (md.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(X, W, B, stride, padding, groups)
    y.backward(gy)
    return y.data, X.grad, W.grad, B.grad


def test_chunked_batches_equal_one_chunk(monkeypatch):
    rng = np.random.default_rng(8)
    x, wt, b = _case(rng, 7, 4, 9, 9, 6, 3, 2, dtype=np.float32)
    gy = rng.standard_normal((7, 6, 5, 5)).astype(np.float32)
    whole = _run(x, wt, b, 2, 1, 2, gy)
    per_sample = (4 * 9 + 6) * 25 * 4  # bytes of col + output matrix per sample
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 3 * per_sample)  # chunks of 3, 3 and 1 samples
    assert workspace.chunks(7, per_sample) == [(0, 3), (3, 6), (6, 7)]
    chunked = _run(x, wt, b, 2, 1, 2, gy)
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 1)  # smaller than one sample: one sample per chunk
    single = _run(x, wt, b, 2, 1, 2, gy)
    for name, a, c, s in zip(("y", "gx", "gw", "gb"), whole, chunked, single):
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(s, a, rtol=1e-5, atol=1e-5, err_msg=name)



@pytest.mark.parametrize("case", [
    dict(n=3, c=3, h=9, w=8, k=5, ks=3, stride=1, padding=1, bias=True),
    dict(n=2, c=4, h=11, w=10, k=6, ks=(5, 3), stride=(2, 1), padding=(2, 0), bias=False),
    dict(n=4, c=2, h=7, w=7, k=3, ks=1, stride=1, padding=0, bias=True),
])
@pytest.mark.parametrize("chunked", [False, True])
def test_image_by_image_gemms_equal_the_batch_gemm(monkeypatch, case, chunked):
    """The CPU's per-image GEMMs (no transposes) give the one-GEMM path's results and gradients."""
    from minidl.functional import conv as fconv
    rng = np.random.default_rng(12)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    ks = case["ks"] if isinstance(case["ks"], tuple) else (case["ks"],) * 2
    wt = rng.standard_normal((case["k"], case["c"]) + ks)
    b = rng.standard_normal(case["k"]) if case["bias"] else None
    if chunked:
        monkeypatch.setattr(workspace, "LIMIT_BYTES", 1)   # one image per chunk

    def run(min_pixels, need_x):
        monkeypatch.setattr(fconv, "PER_IMAGE_MIN_PIXELS", min_pixels)
        X = md.tensor(x, requires_grad=need_x)
        W = md.tensor(wt, requires_grad=True)
        B = md.tensor(b, requires_grad=True) if b is not None else None
        y = F.conv2d(X, W, B, case["stride"], case["padding"])
        y.backward(np.cos(np.arange(y.data.size)).reshape(y.shape))
        return [y.data, X.grad, W.grad, None if B is None else B.grad]
    for need_x in (True, False):
        for a, r in zip(run(0, need_x), run(1 << 30, need_x)):
            if r is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    workspace.release()


# 1x1 / stride 1 / padding 0 convolutions skip im2col on the GPU (a batched matmul); the same code
# runs here on NumPy with POINTWISE_ON_CPU. Both ways of forming gW are covered (batched product
# summed over n when K*C is small next to P, transposed copies otherwise).
@pytest.fixture
def pointwise_on_cpu(monkeypatch):
    monkeypatch.setattr(kernel_conv, "POINTWISE_ON_CPU", True)
    monkeypatch.setattr(kernel_conv, "POINTWISE_MIN_P", 1)


def test_pointwise_path_is_off_on_the_cpu_by_default(monkeypatch):
    cpu = kernels.get("numba")
    calls = []
    real = cpu.im2col
    monkeypatch.setattr(cpu, "im2col", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    x, wt, b = _case(np.random.default_rng(0), 2, 4, 16, 16, 3, 1, 1, dtype=np.float32)
    F.conv2d(md.tensor(x), md.tensor(wt), md.tensor(b))
    assert calls == [1]


@pytest.mark.parametrize("c,k,h,w,groups,with_bias", [
    (4, 6, 5, 3, 1, True),     # P = 15 large next to K*C: batched product + sum (x transposed)
    (6, 4, 5, 3, 1, False),    # the same with C > K: gy transposed
    (8, 12, 1, 2, 1, False),   # P = 2: transposed copies, one GEMM
    (6, 4, 3, 4, 2, True),     # groups: the im2col path
    (8, 8, 1, 1, 4, False),
])
def test_pointwise_conv_without_im2col(monkeypatch, pointwise_on_cpu, c, k, h, w, groups, with_bias):
    cpu = kernels.get("numba")
    if groups == 1:
        monkeypatch.setattr(cpu, "im2col", lambda *a, **kw: pytest.fail("a 1x1 convolution called im2col"))
        monkeypatch.setattr(cpu, "col2im", lambda *a, **kw: pytest.fail("a 1x1 convolution called col2im"))
    rng = np.random.default_rng(c * k + h)
    x, wt, b = _case(rng, 3, c, h, w, k, 1, groups)
    b = b if with_bias else None
    y = F.conv2d(md.tensor(x), md.tensor(wt), None if b is None else md.tensor(b), groups=groups)
    np.testing.assert_allclose(y.data, _conv_loops(x, wt, b, (1, 1), (0, 0), groups), rtol=1e-12, atol=1e-12)
    inputs = [md.tensor(a, requires_grad=True) for a in ((x, wt) if b is None else (x, wt, b))]
    md.gradcheck(lambda *t: F.conv2d(*t[:2], t[2] if len(t) > 2 else None, groups=groups), *inputs)


def test_pointwise_conv_float32_and_gradients_only_where_required(pointwise_on_cpu):
    rng = np.random.default_rng(12)
    x, wt, b = _case(rng, 2, 6, 4, 4, 5, 1, 1, dtype=np.float32)
    X, W, B = md.tensor(x), md.tensor(wt, requires_grad=True), md.tensor(b, requires_grad=True)
    y = F.conv2d(X, W, B)
    assert y.dtype == np.float32 and y.shape == (2, 5, 4, 4)
    y.sum().backward()
    assert X.grad is None and W.grad.dtype == np.float32 and W.grad.shape == wt.shape
    np.testing.assert_allclose(B.grad, np.full(5, 2 * 4 * 4))
    X, W = md.tensor(x, requires_grad=True), md.tensor(wt)
    F.conv2d(X, W).sum().backward()
    assert X.grad.dtype == np.float32 and X.grad.shape == x.shape and W.grad is None
    np.testing.assert_allclose(X.grad, np.broadcast_to(wt.sum(axis=0).reshape(1, 6, 1, 1), x.shape), rtol=1e-6)

# ---- PyTorch ----------------------------------------------------------------------------------
TORCH_CASES = [  # (N, C, H, W, K, kernel, stride, padding, groups)
    (2, 3, 13, 11, 8, 5, 1, 2, 1),
    (2, 4, 12, 12, 6, 3, 2, 1, 2),      # AlexNet-style towers
    (3, 8, 9, 10, 8, 1, 1, 0, 4),
    (2, 16, 7, 7, 32, 1, 1, 0, 1),      # ResNet bottleneck 1x1 (no im2col)
    (1, 3, 31, 29, 4, 11, 4, 3, 1),     # AlexNet conv1 geometry, small
    (2, 6, 10, 9, 6, (3, 5), (2, 1), (0, 2), 3),
]


@pytest.mark.parametrize("case", TORCH_CASES)
def test_matches_torch_float32(case):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    n, c, h, w, k, kernel, stride, padding, groups = case
    rng = np.random.default_rng(9)
    x, wt, b = _case(rng, n, c, h, w, k, kernel, groups, dtype=np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, 1, groups)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    ours = _run(x, wt, b, stride, padding, groups, gy)
    theirs = (ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy())
    for name, a, t in zip(("y", "gx", "gw", "gb"), ours, theirs):
        assert a.dtype == np.float32 and a.shape == t.shape, name
        rel = np.abs(a - t).max() / max(np.abs(t).max(), 1e-12)
        assert rel <= 1e-4, f"{name}: relative error {rel:.2e} against torch"


# ---- errors -----------------------------------------------------------------------------------
def _t(*shape):
    return md.tensor(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("args,kwargs,message", [
    ((_t(3, 5, 5), _t(4, 3, 3, 3)), {}, r"conv2d: expected a 4-D input \(N, C, H, W\), got shape \(3, 5, 5\)"),
    ((_t(1, 3, 5, 5), _t(4, 3, 3)), {}, r"conv2d: expected a 4-D weight .* got shape \(4, 3, 3\)"),
    ((_t(1, 3, 5, 5), _t(4, 2, 3, 3)), {}, r"conv2d: input has 3 channels, but the weight \(4, 2, 3, 3\) expects "
                                           r"2 per group x 1 groups = 2"),
    ((_t(1, 6, 5, 5), _t(4, 2, 3, 3)), {"groups": 2}, r"input has 6 channels.* 2 per group x 2 groups = 4"),
    ((_t(1, 6, 5, 5), _t(4, 2, 3, 3)), {"groups": 4}, r"conv2d: input channels \(6\) are not divisible by groups \(4\)"),
    ((_t(1, 4, 5, 5), _t(6, 1, 3, 3)), {"groups": 4}, r"conv2d: output channels \(6.*not divisible by groups \(4\)"),
    ((_t(1, 3, 4, 4), _t(2, 3, 7, 7)), {"padding": 1}, r"conv2d: kernel 7x7 is larger than the padded input 6x6 "
                                                       r"\(input 4x4, padding \(1, 1\)\)"),
    ((_t(1, 3, 4, 4), _t(2, 3, 3, 3)), {"padding": -1}, r"conv2d: padding must be >= 0, got \(-1, -1\)"),
    ((_t(1, 3, 4, 4), _t(2, 3, 3, 3)), {"stride": (1, 0)}, r"conv2d: stride must be >= 1, got \(1, 0\)"),
    ((_t(1, 3, 4, 4), _t(2, 3, 3, 3)), {"stride": (1, 2, 3)}, r"conv2d: stride must be an int or a pair"),
    ((_t(1, 3, 4, 4), _t(2, 3, 3, 3), _t(3)), {}, r"conv2d: bias has shape \(3,\), expected \(2,\)"),
    ((_t(1, 3, 4, 4), md.tensor(np.zeros((2, 3, 3, 3)))), {}, r"conv2d: .*input float32, weight float64"),
    ((_t(1, 4, 4, 4), _t(4, 1, 3, 3)), {"groups": 0}, r"conv2d: groups must be a positive int, got 0"),
])
def test_invalid_arguments_raise(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.conv2d(*args, **kwargs)


def test_conv2d_layer_uses_it():
    layer = md.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = md.tensor(np.random.default_rng(10).standard_normal((2, 4, 9, 9)).astype(np.float32))
    y = layer(x)
    assert y.shape == (2, 6, 5, 5)
    expected = _conv_loops(x.data.astype(np.float64), layer.weight.data.astype(np.float64),
                           layer.bias.data.astype(np.float64), (2, 2), (1, 1), 2)
    np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-5)
