"""2-D convolution as im2col + GEMM + col2im (Chellapilla et al. 2006; Caffe, Chainer, DeZero).

Read ``Conv2d.forward`` and ``Conv2d.backward`` top to bottom; each chunk of the batch goes through

    forward:   col = im2col(x)                 (C*kh*kw, nb*oh*ow)  every receptive field as a column
               y   = W @ col                   (K, nb*oh*ow)        ONE matrix multiply (BLAS SGEMM)
    backward:  gW += gy @ col.T                (K, C*kh*kw)          (computed as (col @ gy.T).T)
               gcol = W.T @ gy                 (C*kh*kw, nb*oh*ow)
               gx  = col2im(gcol)              (nb, C, H, W)        the adjoint of im2col: windows summed

With ``groups`` (AlexNet's two GPU towers) the rows of col and of W split into ``groups`` blocks
and each block gets its own GEMM. im2col/col2im live in minidl/kernels/conv.py (reference, Numba and
CUDA side by side), chosen by the array type.

Its scratch matrices (col and the GEMM's (K, nb*oh*ow) output) come from the convolutions' shared
arena (minidl/kernels/workspace.py): the batch goes through in chunks whose scratch fits that
arena's bound, and the arena is kept between calls (a fresh 200 MB array would be faulted in page
by page at every step) but is one for all layers and algorithms. Backward recomputes col there
instead of keeping one col per layer alive, unless the arena still holds it (the conv that ran
last in forward runs first in backward).
"""
import itertools

import numpy as np

from minidl import backend, kernels
from minidl.autograd import Function
from minidl.kernels import blas, conv as kc, winograd, workspace
from minidl.kernels._geometry import conv_window

_tokens = itertools.count()  # labels for the arena's contents: which conv call and chunk wrote them

# On the CPU, without groups and with enough pixels per image, each image's GEMM reads its columns
# of col in place (a strided view, no copy) and writes its own slice of y: y (and gy, in backward)
# keep the (N, K, oh*ow) layout, so the transposes between it and (K, N*oh*ow) disappear, and the
# batch of products is split across threads (kernels/blas.py). Measured (2-core EPYC, a chunk of 43
# images of the 3 -> 64-channel 5x5 layer at 32x32, ms): forward GEMM + transpose 8.0 -> 5.4,
# weight gradient 7.7 -> 4.6, input gradient 4.9 -> 5.3. With few pixels per image the products get
# too small (one call per image), so below this the one big GEMM stays:
PER_IMAGE_MIN_PIXELS = 256


def _per_image(xp, groups, pixels):
    return xp is np and groups == 1 and pixels >= PER_IMAGE_MIN_PIXELS


# ---- argument checks ------------------------------------------------------------------------------
def _check(x, w, b, stride, padding, groups):
    """Validate shapes and options (ValueError naming conv2d and the numbers); return the Window."""
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)} ({x.ndim}-D)")
    if w.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (K, C/groups, kh, kw), got shape {tuple(w.shape)} "
                         f"({w.ndim}-D)")
    if x.dtype.kind != "f" or x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise ValueError(f"conv2d: input, weight and bias must share one floating dtype, got input {x.dtype}, "
                         f"weight {w.dtype}" + (f", bias {b.dtype}" if b is not None else ""))
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    if C % groups:
        raise ValueError(f"conv2d: input channels ({C}) are not divisible by groups ({groups})")
    if K % groups:
        raise ValueError(f"conv2d: output channels ({K}, the weight's first axis) are not divisible by "
                         f"groups ({groups})")
    if Cg * groups != C:
        raise ValueError(f"conv2d: input has {C} channels, but the weight {tuple(w.shape)} expects "
                         f"{Cg} per group x {groups} groups = {Cg * groups}")
    if b is not None and tuple(b.shape) != (K,):
        raise ValueError(f"conv2d: bias has shape {tuple(b.shape)}, expected ({K},) for {K} output channels")
    return conv_window("conv2d", H, W, (kh, kw), stride, padding)


# ---- 1x1 convolution, stride 1, no padding, one group, on the GPU: one batched GEMM, no im2col ----
# (minidl/kernels/conv.py: where it pays, and why only on the GPU)
_is_pointwise, _pointwise_forward, _pointwise_backward = kc.is_pointwise, kc.pointwise_forward, kc.pointwise_backward


# ---- the op ---------------------------------------------------------------------------------------
class Conv2d(Function):
    """x (N, C, H, W) * weight (K, C/groups, kh, kw) + bias (K,) -> y (N, K, oh, ow).

    oh = (H + 2*ph - kh) // sh + 1, ow likewise. Cross-correlation, as in every DL library.
    """

    def __init__(self, stride=1, padding=0, groups=1, algorithm="auto"):
        self.stride, self.padding, self.groups, self.algorithm = stride, padding, groups, algorithm

    def forward(self, x, w, b=None):
        window = _check(x, w, b, self.stride, self.padding, self.groups)
        kh, kw, oh, ow = window.kh, window.kw, window.oh, window.ow
        xp, k = backend.xp_of(x), kernels.of(x)
        N, C, H, W = x.shape
        K, Cg = w.shape[:2]
        G = self.groups
        self.pointwise = _is_pointwise(xp, window, G)
        if self.pointwise:
            x = xp.ascontiguousarray(x)
            self.x, self.w, self.window = x, w, window
            return _pointwise_forward(xp, x, w, b)
        # Winograd F(m x m, 3 x 3) for 3x3 and 5x5 stride-1 layers (minidl/kernels/winograd.py): m, or None
        self.winograd = winograd.choose(self.algorithm, x.shape, w.shape, (window.sh, window.sw),
                                        (window.ph, window.pw), G, x.dtype, gpu=xp is not np)
        if self.winograd:
            x = xp.ascontiguousarray(x)
            self.x, self.w, self.window = x, w, window
            return winograd.forward(x, w, b, (window.ph, window.pw), G, self.winograd)
        P = oh * ow
        x = xp.ascontiguousarray(x)
        wg = w.reshape(G, K // G, Cg * kh * kw)  # one (K/G, C/G*kh*kw) weight matrix per group

        y = xp.empty((N, K, oh, ow), dtype=x.dtype)
        self.token = next(_tokens)
        for n0, n1 in workspace.chunks(N, (C * kh * kw + K) * P * x.itemsize, xp):
            nb = n1 - n0
            (col, ymat), _ = workspace.arena(xp, [((C * kh * kw, nb * P), x.dtype), ((G, K // G, nb * P), x.dtype)],
                                             writer=(self.token, n0))
            # 1. im2col: every receptive field of the chunk becomes a column
            k.im2col(x[n0:n1], window, out=col)
            if _per_image(xp, G, P):   # image i's columns, col[:, i*P:(i+1)*P], straight into y[i]
                yc = y[n0:n1].reshape(nb, K, P)
                blas.matmul(xp.broadcast_to(wg[0], (nb, K, Cg * kh * kw)),
                            col.reshape(C * kh * kw, nb, P).transpose(1, 0, 2), out=yc)
                if b is not None:
                    yc += b[:, None]
                continue
            # 2. the GEMM, one per group: (K/G, C/G*kh*kw) @ (C/G*kh*kw, nb*P) -> (K/G, nb*P)
            colg = col.reshape(G, Cg * kh * kw, nb * P)
            for g in range(G):
                xp.matmul(wg[g], colg[g], out=ymat[g])
            # 3. (K, nb, P) -> (nb, K, P), adding the bias on the way
            yc = y[n0:n1].reshape(nb, K, P)
            ymat = ymat.reshape(K, nb, P).transpose(1, 0, 2)
            if b is not None:
                xp.add(ymat, b[:, None], out=yc)
            else:
                yc[...] = ymat
        self.x, self.w, self.window = x, w, window
        return y

    def backward(self, gy):
        x, w = self.x, self.w
        window = self.window
        kh, kw, oh, ow = window.kh, window.kw, window.oh, window.ow
        xp, k = backend.xp_of(gy), kernels.of(gy)
        N, C, H, W = x.shape
        K, Cg, _, _ = w.shape
        G, P = self.groups, oh * ow
        need_gx, need_gw = self.needs_input_grad[0], self.needs_input_grad[1]
        need_gb = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        gy = xp.ascontiguousarray(gy)
        if self.pointwise:
            gx, gw, gb = _pointwise_backward(xp, x, w, gy, need_gx, need_gw, need_gb)
            return (gx, gw, gb) if len(self.needs_input_grad) > 2 else (gx, gw)
        if self.winograd:
            gx, gw, gb = winograd.backward(x, w, gy, (window.ph, window.pw), G, self.winograd,
                                           need_gx, need_gw, need_gb)
            return (gx, gw, gb) if len(self.needs_input_grad) > 2 else (gx, gw)
        wg = w.reshape(G, K // G, Cg * kh * kw)

        gx = xp.empty(x.shape, dtype=x.dtype) if need_gx else None
        gwT = xp.zeros((G, Cg * kh * kw, K // G), dtype=w.dtype) if need_gw else None  # gW transposed, see below
        gb = xp.zeros(K, dtype=gy.dtype) if need_gb else None
        # Last chunk first: when no other conv ran in between (always for the layer that ran last
        # in forward, the first one in backward) the arena still holds its col.
        for n0, n1 in reversed(workspace.chunks(N, (C * kh * kw + K) * P * x.itemsize, xp)):
            nb = n1 - n0
            (col, gymat), intact = workspace.arena(
                xp, [((C * kh * kw, nb * P), x.dtype), ((K, nb, P), gy.dtype)], expect=(self.token, n0))
            if _per_image(xp, G, P):   # as in forward: image by image, gy and col read in place
                gyc = gy[n0:n1].reshape(nb, K, P)
                colv = col.reshape(C * kh * kw, nb, P).transpose(1, 0, 2)
                if need_gb:
                    gb += gyc.sum(axis=(0, 2))
                if need_gw:
                    if not intact:
                        k.im2col(x[n0:n1], window, out=col)
                    gwT[0] += blas.matmul(colv, gyc.transpose(0, 2, 1)).sum(axis=0)
                if need_gx:
                    blas.matmul(xp.broadcast_to(wg[0].T, (nb, C * kh * kw, K)), gyc, out=colv)
                    k.col2im(col, (nb, C, H, W), window, out=gx[n0:n1])
                continue
            # gy of the chunk as a matrix (K, nb*P), the layout of y before the transpose in forward
            gymat[...] = gy[n0:n1].reshape(nb, K, P).transpose(1, 0, 2)
            gymat = gymat.reshape(G, K // G, nb * P)
            if need_gb:  # per (k, n) first: K*nb parallel sums on the GPU, not K long ones
                gb += gymat.reshape(K, nb, P).sum(axis=2).sum(axis=1)
            if need_gw:
                # gW = gy @ col.T, computed as its transpose col @ gy.T: OpenBLAS runs that 1.5-4x
                # faster when K is small (64) and the shared axis nb*P is long. col is recomputed
                # into the arena (cheaper than keeping one col per layer alive).
                if not intact:
                    k.im2col(x[n0:n1], window, out=col)
                colg = col.reshape(G, Cg * kh * kw, nb * P)
                for g in range(G):
                    gwT[g] += colg[g] @ gymat[g].T
            if need_gx:
                # gcol = W.T @ gy, written over col (no longer needed), then col2im sums the windows back
                gcol = col
                gcolg = gcol.reshape(G, Cg * kh * kw, nb * P)
                for g in range(G):
                    xp.matmul(wg[g].T, gymat[g], out=gcolg[g])
                k.col2im(gcol, (nb, C, H, W), window, out=gx[n0:n1])
        gw = xp.ascontiguousarray(gwT.transpose(0, 2, 1)).reshape(w.shape) if need_gw else None
        return (gx, gw, gb) if len(self.needs_input_grad) > 2 else (gx, gw)


def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1, *, algorithm="auto"):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (K, C/groups, kh, kw).

    bias: (K,) or None. stride, padding: int or (h, w) pair. groups: split channels into
    independent groups (AlexNet's towers). Returns (N, K, oh, ow), oh = (H + 2*ph - kh) // sh + 1.
    algorithm: "im2col"; "winograd" (3x3 or 5x5, stride 1 only: F(4x4, 3x3), or F(2x2, 3x3) on
    tiny outputs, 5x5 as four 3x3 sub-kernels; float32 within 1e-4 relative of im2col); "auto"
    (default): Winograd on the CPU for float32 3x3 stride-1 layers with >= 16 channels each way
    and >= 512 tiles in the batch (where it measured faster), and for 5x5 ones that also have
    >= 16x16 outputs; im2col
    otherwise (float64 and the GPU: always). See minidl/kernels/winograd.py.
    """
    if algorithm not in winograd.ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {', '.join(map(repr, winograd.ALGORITHMS))}, "
                         f"got {algorithm!r}")
    f = Conv2d(stride, padding, groups, algorithm)
    return f(x, weight) if bias is None else f(x, weight, bias)
