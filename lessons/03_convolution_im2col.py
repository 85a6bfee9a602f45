# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Convolution as im2col + one matrix product
#
# Every output unit of a convolution is a **dot product** between a filter and the window of input
# under it (slide 14). Copy every window into a column of a matrix (**im2col**) and all those dot
# products become one matrix product — the operation BLAS libraries and GPUs run fastest. The price
# is memory: each input pixel is copied into up to k·k columns.

# %%
import os, sys
sys.path.insert(0, os.path.abspath(".."))     # minidl from this checkout, even without pip install -e .
import numpy as np
import minidl as md
from minidl import nn, functional as F, models
from minidl.testing import check_layer
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")

# %%
x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
from solutions.im2col import im2col as sol_im2col
col = sol_im2col(x, 2, 1, 0)
print("input\n", x[0, 0])
print("im2col with a 2x2 window, stride 1: one column per output position\n", col)
w = np.array([[1.0, 0.0], [0.0, -1.0]])
y = F.conv2d(md.tensor(x), md.tensor(w.reshape(1, 1, 2, 2))).numpy()
print("output (0, 1) =", y[0, 0, 0, 1], "= filter . column 1 =", w.ravel() @ col[:, 1])


# %% [markdown]
# ## Exercise: im2col and col2im
#
# `my_im2col(x, k, s, p)` turns `x (N, C, H, W)` into `(C*k*k, N*oh*ow)`: row `(c, i, j)`,
# column `(n, y, x)` holds `x[n, c, y*s - p + i, x*s - p + j]` (zero in the padding).
# `my_col2im` is its adjoint: it adds every column entry back to the pixel it came from — where
# windows overlap, contributions **sum**. The class below builds a convolution from your two
# functions; `check_layer` compares it with `F.conv2d` (stride 2 with a 3x3 kernel, so windows overlap).

# %%
def my_im2col(x, k, s=1, p=0):
    N, C, H, W = x.shape
    oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    # EXERCISE: fill the columns
    return np.zeros((C * k * k, N * oh * ow), dtype=x.dtype)

def my_col2im(col, x_shape, k, s=1, p=0):
    # EXERCISE: add every column entry back to its pixel
    return np.zeros(x_shape, dtype=col.dtype)


# %%
class ConvGEMM(md.Function):
    """y = W (K, C*k*k) @ col; backward: gW = g @ col^T, gx = col2im(W^T @ g)."""
    def __init__(self, im2col, col2im, stride=1, padding=0):
        self.im2col, self.col2im, self.s, self.p = im2col, col2im, stride, padding

    def forward(self, x, w):
        N, C, H, W = x.shape
        K, _, k, _ = w.shape
        oh, ow = (H + 2 * self.p - k) // self.s + 1, (W + 2 * self.p - k) // self.s + 1
        self.col, self.w, self.x_shape = self.im2col(x, k, self.s, self.p), w, x.shape
        return (w.reshape(K, -1) @ self.col).reshape(K, N, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        K, k = self.w.shape[0], self.w.shape[2]
        g = gy.transpose(1, 0, 2, 3).reshape(K, -1)
        gw = (g @ self.col.T).reshape(self.w.shape)
        gx = self.col2im(self.w.reshape(K, -1).T @ g, self.x_shape, k, self.s, self.p)
        return gx, gw

def check_conv():
    return check_layer(lambda x, w: ConvGEMM(my_im2col, my_col2im, 2, 1)(x, w),
                       reference=lambda x, w: F.conv2d(x, w, None, 2, 1),
                       shapes=[((2, 2, 7, 7), (3, 2, 3, 3))], name="ConvGEMM")
result = check_conv()

# %% [markdown]
# Solution: `solutions/im2col.py`.

# %%
from solutions.im2col import im2col as my_im2col, col2im as my_col2im
assert check_conv()

# %% [markdown]
# ## The memory cost, layer by layer in AlexNet
#
# For each convolution of the paper's AlexNet (227x227 input) we record the input it receives and
# compute the size of its im2col matrix (per image, float32), against the size of the input itself.

# %%
from minidl.visualize import layer_outputs
alex = models.alexnet()
convs = [(name, m) for name, m in alex.features.named_modules() if isinstance(m, nn.Conv2d)]
inputs = {}
for name, m in convs:          # record each conv's input with a wrapper around its forward
    def hook(x, _m=m, _name=name, _f=m.forward):
        inputs[_name] = x.shape
        return _f(x)
    object.__setattr__(m, "forward", hook)
with md.no_grad():
    alex.features(md.tensor(np.zeros((1, 3, 227, 227), dtype=np.float32)))
for _, m in convs:
    object.__delattr__(m, "forward")
print(f"{'layer':8s} {'input':>14s} {'col rows x cols':>18s} {'input MB':>9s} {'col MB':>8s} {'ratio':>6s}  (batch 128: col GB)")
for name, m in convs:
    _, C, H, W = inputs[name]
    k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
    oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    rows, cols = C * k * k, oh * ow
    in_mb, col_mb = C * H * W * 4 / 2**20, rows * cols * 4 / 2**20
    print(f"{name:8s} {str((C, H, W)):>14s} {f'{rows} x {cols}':>18s} {in_mb:9.2f} {col_mb:8.2f} {col_mb / in_mb:6.1f}  {128 * col_mb / 1024:.2f}")

# %% [markdown]
# The first layer's matrix is about 7x its input (11·11 windows at stride 4 overlap), the 3x3 layers
# about 9x. A training engine reuses these buffers between steps instead of allocating them anew.
#
# ## Speed: loops vs one GEMM
#
# The same convolution three ways: a Python loop over output positions (each a small dot product),
# the im2col + GEMM above, and `F.conv2d` (Numba im2col + BLAS).

# %%
import time
rng = np.random.default_rng(0)
N, C, H, K, k = pick(2, 8), 16, pick(14, 28), 32, 3
xa, wa = rng.standard_normal((N, C, H, H)), rng.standard_normal((K, C, k, k))

def conv_loops(x, w):
    out = np.zeros((x.shape[0], w.shape[0], H - k + 1, H - k + 1))
    for i in range(H - k + 1):
        for j in range(H - k + 1):
            out[:, :, i, j] = np.tensordot(x[:, :, i:i + k, j:j + k], w, axes=([1, 2, 3], [1, 2, 3]))
    return out

def timed(f):
    t = time.perf_counter(); r = f(); return r, time.perf_counter() - t

r1, t1 = timed(lambda: conv_loops(xa, wa))
r2, t2 = timed(lambda: ConvGEMM(my_im2col, my_col2im)(md.tensor(xa), md.tensor(wa)).numpy())
r3, t3 = timed(lambda: F.conv2d(md.tensor(xa), md.tensor(wa)).numpy())
assert np.allclose(r1, r2) and np.allclose(r1, r3)
print(f"loops {1e3 * t1:.1f} ms, im2col+GEMM (NumPy) {1e3 * t2:.1f} ms, F.conv2d {1e3 * t3:.1f} ms")
