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
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")

# %%
x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
from minidl.assignments.solutions.part2_conv import im2col as sol_im2col   # the assignment's worked im2col
col = sol_im2col(x, 2, 2, 1, 0)
print("input\n", x[0, 0])
print("im2col with a 2x2 window, stride 1: one column per output position\n", col)
w = np.array([[1.0, 0.0], [0.0, -1.0]])
y = F.conv2d(md.tensor(x), md.tensor(w.reshape(1, 1, 2, 2))).numpy()
print("output (0, 1) =", y[0, 0, 0, 1], "= filter . column 1 =", w.ravel() @ col[:, 1])


# %% [markdown]
# ## A real photograph through im2col, with hand-set edge filters (slide 14)
#
# scikit-learn (a minidl dependency) ships two photographs; we take the one of a Chinese temple,
# in grey, at half resolution. Four hand-set 3x3 filters — the Sobel operators for vertical and
# horizontal edges and two diagonal versions — become the four rows of a 4 x 9 matrix W. im2col
# turns the photo into a 9 x (H·W) matrix, one column per output pixel; **one** product W @ col
# gives all four filtered images at once.

# %%
import matplotlib.pyplot as plt
plt.rcParams.update({"figure.dpi": 100})          # every figure >= 400 px on its short side
import importlib.util
from PIL import Image
# the file sklearn.datasets.load_sample_image("china.jpg") reads, opened directly (importing
# sklearn.datasets costs seconds); scikit-learn is a minidl dependency: no download
china = os.path.join(importlib.util.find_spec("sklearn").submodule_search_locations[0], "datasets", "images", "china.jpg")
rgb = np.asarray(Image.open(china), dtype=np.float64) / 255               # (427, 640, 3)
grey = rgb @ np.array([0.299, 0.587, 0.114])
photo = grey[: grey.shape[0] // 2 * 2, : grey.shape[1] // 2 * 2].reshape(grey.shape[0] // 2, 2, grey.shape[1] // 2, 2).mean(axis=(1, 3))
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
edges = {"vertical edges": sobel_x, "horizontal edges": sobel_x.T,
         # brighter towards the top right: edges that run top-left to bottom-right, and the mirror image
         "diagonal edges \\": np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], dtype=np.float64),
         "diagonal edges /": np.array([[-2, -1, 0], [-1, 0, 1], [0, 1, 2]], dtype=np.float64)}
Wf = np.stack([f.ravel() for f in edges.values()])                      # (4, 9): one filter per row
H, W_ = photo.shape
col = sol_im2col(photo[None, None], 3, 3, 1, 1)                            # (9, H*W)
maps = (Wf @ col).reshape(len(edges), H, W_)
same = np.allclose(maps, F.conv2d(md.tensor(photo[None, None]), md.tensor(Wf.reshape(4, 1, 3, 3)), None, 1, 1).numpy()[0])
print(f"photo {H}x{W_}; col {col.shape[0]} x {col.shape[1]:,} ({col.nbytes / photo.nbytes:.0f}x the photo's memory); "
      f"W @ col == F.conv2d: {same}")

fig, axes = plt.subplots(2, 3, figsize=(11, 6.2))
axes[0, 0].imshow(photo, cmap="gray"); axes[0, 0].set_title("input (grey, half resolution)")
for ax, (name, m) in zip(axes.ravel()[1:], zip(edges, maps)):
    lim = np.percentile(np.abs(m[1:-1, 1:-1]), 99.5)     # the zero padding makes strong edges at the border
    ax.imshow(m[1:-1, 1:-1], cmap="RdBu_r", vmin=-lim, vmax=lim); ax.set_title(name)
axes[1, 2].imshow(np.hypot(maps[0], maps[1])[1:-1, 1:-1], cmap="gray_r"); axes[1, 2].set_title("gradient magnitude (from rows 1, 2)")
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
fig.suptitle("one matrix product W (4 x 9) @ im2col(photo) (9 x H·W): four filtered images (red +, blue −)")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## The im2col matrix, seen
#
# The same computation on a 10 x 24 crop (a dark-bright-dark band of the temple), small enough to see
# every column.
# Column c of the im2col matrix is the 3x3 window around crop pixel c, laid out as 9 values; the
# product with W turns each column into the four filter responses at that pixel. Neighbouring
# columns share six of their nine values: that redundancy is the memory price.

# %%
crop = photo[60:70, 100:124]
ccol = sol_im2col(crop[None, None], 3, 3, 1, 1)                            # (9, 240)
pick_px = (4, 9)                                                        # one pixel, outlined in all three panels
c = pick_px[0] * crop.shape[1] + pick_px[1]
fig, axes = plt.subplots(3, 1, figsize=(13, 9), gridspec_kw={"height_ratios": [2.2, 1.4, 1]})
axes[0].imshow(crop, cmap="gray")
axes[0].add_patch(plt.Rectangle((pick_px[1] - 1.5, pick_px[0] - 1.5), 3, 3, fill=False, ec="red", lw=2))
axes[0].set_title(f"crop {crop.shape[0]}x{crop.shape[1]}: the 3x3 window of pixel {pick_px} in red")
axes[1].imshow(ccol, cmap="gray", aspect="auto", interpolation="nearest")
axes[1].add_patch(plt.Rectangle((c - 0.5, -0.5), 1, 9, fill=False, ec="red", lw=2))
axes[1].set_title(f"im2col: {ccol.shape[0]} rows (window offsets) x {ccol.shape[1]} columns (pixels, row by row); column {c} in red")
axes[1].set_yticks(range(9)); axes[1].set_yticklabels([f"({i},{j})" for i in range(3) for j in range(3)], fontsize=7)
resp = Wf @ ccol
axes[2].imshow(resp, cmap="RdBu_r", aspect="auto", interpolation="nearest", vmin=-np.abs(resp).max(), vmax=np.abs(resp).max())
axes[2].add_patch(plt.Rectangle((c - 0.5, -0.5), 1, 4, fill=False, ec="black", lw=2))
axes[2].set_yticks(range(4)); axes[2].set_yticklabels(list(edges), fontsize=8)
axes[2].set_title("W @ im2col: four filter responses per pixel (each row reshapes to a filtered crop)")
axes[0].set_xticks([]); axes[0].set_yticks([])
plt.tight_layout(); plt.show()
print("column", c, "=", np.round(ccol[:, c], 3), "\n    = the window", np.round(crop[pick_px[0] - 1:pick_px[0] + 2, pick_px[1] - 1:pick_px[1] + 2].ravel(), 3))


# %% [markdown]
# ## Exercise: im2col and col2im
#
# `im2col(x, kh, kw, stride, padding)` turns `x (N, C, H, W)` into `(C*kh*kw, N*oh*ow)`: row `(c, i, j)`,
# column `(n, y, x)` holds `x[n, c, y*stride - padding + i, x*stride - padding + j]` (zero in the padding).
# `col2im` is its adjoint: it adds every column entry back to the pixel it came from — where
# windows overlap, contributions **sum**. The grader checks both on overlapping windows (stride 2 with
# a 3x3 kernel), padding and odd sizes; the convolution built on them is task `conv` of the assignments.

# %%
# The stub of assignment tasks `im2col` and `col2im`: replace each NotImplementedError with your code.
def im2col(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> col (C*kh*kw, N*oh*ow): every receptive field as a column."""
    raise NotImplementedError("im2col: pad x (np.pad), then copy every kernel offset (i, j) into its rows")


def col2im(col, x_shape, kh, kw, stride=1, padding=0):
    """col (C*kh*kw, N*oh*ow) -> (N, C, H, W): the adjoint of im2col. Every entry is added back to the
    pixel it came from; where windows overlap the contributions sum; the padding is cut away."""
    raise NotImplementedError("col2im: add (+=) every kernel offset's entries back into a zero padded "
                              "image, then crop the padding")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("im2col", globals());
assignments.check("col2im", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("im2col")   # the worked solution file, graded as yours would be
assert assignments.check("im2col", solution).passed
assert assignments.check("col2im", solution).passed
im2col, col2im = solution.im2col, solution.col2im   # the notebook goes on with these

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
# im2col + GEMM in NumPy (the assignment's worked `Conv2d`), and `F.conv2d` (Numba im2col + BLAS).

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
from minidl.assignments.solutions.part2_conv import Conv2d as Conv2dIm2col   # im2col + one GEMM, in NumPy
r2, t2 = timed(lambda: Conv2dIm2col()(md.tensor(xa), md.tensor(wa), md.tensor(np.zeros(K))).numpy())
r3, t3 = timed(lambda: F.conv2d(md.tensor(xa), md.tensor(wa)).numpy())
assert np.allclose(r1, r2) and np.allclose(r1, r3)
print(f"loops {1e3 * t1:.1f} ms, im2col+GEMM (NumPy) {1e3 * t2:.1f} ms, F.conv2d {1e3 * t3:.1f} ms")

# %% [markdown]
# ## Beyond im2col: Winograd's minimal filtering for 3x3 layers
#
# im2col turns a convolution into one matrix product, but it still does every multiplication of
# the definition: a 3x3 filter costs 9 multiply-adds per output and channel. After VGG (lesson 07)
# almost every layer of a large ConvNet is a 3x3, stride-1 convolution, and a fixed small filter
# invites a trick from signal processing (Winograd 1980, brought to ConvNets by Lavin & Gray 2016):
# compute m outputs of a 3-tap correlation from m + 2 inputs with only m + 2 multiplications,
#
#     y = A^T [ (G g) * (B^T d) ]        (* is elementwise)
#
# where G transforms the filter (once per layer), B^T the input tile and A^T brings the products
# back. minidl derives A^T, G and B^T exactly from interpolation points (`winograd.matrices`). In
# 1-D with m = 2 (F(2, 3)):

# %%
from fractions import Fraction
from minidl.kernels import winograd as wg

at, g, bt = wg.matrices(2)
for name, mat in (("A^T", at), ("G", g), ("B^T", bt)):
    print(name, [[str(v) for v in row] for row in mat])
d, filt = [Fraction(v) for v in (3, -1, 4, 2)], [Fraction(v) for v in (1, 5, -2)]
products = [sum(g[t][u] * filt[u] for u in range(3)) * sum(bt[t][j] * d[j] for j in range(4)) for t in range(4)]
y = [sum(at[i][t] * products[t] for t in range(4)) for i in range(2)]
direct = [sum(filt[u] * d[i + u] for u in range(3)) for i in range(2)]
print("Winograd:", [str(v) for v in y], "with", len(products), "multiplications;",
      "direct:", [str(v) for v in direct], "with", 2 * 3)

# %% [markdown]
# In 2-D the same identity nests: an (m+2) x (m+2) input tile gives an m x m output tile with
# (m+2)^2 elementwise products. Summed over input channels, each of the (m+2)^2 transform points
# becomes one matrix product (filters x channels) @ (channels x tiles), so the GEMMs shrink by
# the factor below, while the transforms add cheap additions around them:

# %%
print("multiplies per output and input channel in the GEMMs:")
print(f"  direct / im2col: {3 * 3}")
for m in wg.TILES:
    print(f"  F({m}x{m}, 3x3): ({m}+2)^2 / {m}^2 = {(m + 2) ** 2 / m ** 2:.4g}  "
          f"({3 * 3 / ((m + 2) ** 2 / m ** 2):.2f}x fewer)")

# %% [markdown]
# The price is accuracy: the transforms' entries grow with m (F(4,3)'s A^T has entries up to 8, its
# G down to 1/24), so float32 rounding errors grow too. Measured on a VGG-like layer against a
# float64 computation, relative to the largest output:

# %%
import time

rng = np.random.default_rng(0)
n, c, h = (2, 64, 16) if FAST else (8, 128, 28)
x64 = rng.standard_normal((n, c, h, h))
w64 = rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))
exact = F.conv2d(md.tensor(x64), md.tensor(w64), None, 1, 1, algorithm="im2col").numpy()
x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
scale = np.abs(exact).max()
err = {"im2col": np.abs(F.conv2d(md.tensor(x32), md.tensor(w32), None, 1, 1, algorithm="im2col").numpy()
                        - exact).max() / scale}
for m in wg.TILES:
    err[f"F({m}x{m},3x3)"] = np.abs(wg.forward(x32, w32, None, (1, 1), 1, m) - exact).max() / scale
for name, e in err.items():
    print(f"float32 {name:<14} max error / max |y| = {e:.1e}")
print("conv2d's promise for algorithm='auto' in float32: within 1e-4 ->",
      "kept" if max(err.values()) < 1e-4 else "BROKEN")

# %% [markdown]
# And the speed, forward + backward of that layer on this machine (both gradients come from the
# same transforms, see minidl/kernels/winograd.py). The ratio depends on the CPU, its BLAS and how
# busy the machine is; benchmarks/cpu.py --rows winograd measures it against PyTorch.

# %%
def fwd_bwd(algorithm):
    X, W = md.tensor(x32, requires_grad=True), md.tensor(w32, requires_grad=True)
    F.conv2d(X, W, None, 1, 1, algorithm=algorithm).backward(np.ones((n, c, h, h), np.float32))

times = {a: [] for a in ("im2col", "winograd")}
for _ in range(1 + (3 if FAST else 5)):       # the first round compiles and warms the buffers up
    for a in times:
        t0 = time.perf_counter()
        fwd_bwd(a)
        times[a].append(time.perf_counter() - t0)
med = {a: float(np.median(ts[1:])) * 1e3 for a, ts in times.items()}
print(f"N{n} C{c} {h}x{h} K{c}: im2col {med['im2col']:.1f} ms, Winograd F(4x4,3x3) {med['winograd']:.1f} ms, "
      f"ratio {med['winograd'] / med['im2col']:.2f}")

# %% [markdown]
# The fewer multiplications only pay where the GEMMs dominate: many channels (the transforms cost
# per element, the GEMMs per element *and* channel), outputs large enough to fill the tiles, and
# batches with enough tiles to amortise the per-call costs (the small layer above has few).
# That is why `F.conv2d(..., algorithm="auto")` picks Winograd per layer shape, from measurements
# recorded in benchmarks/RESULTS.md, and never for float64 (whose results it keeps unchanged) —
# and why VGG's uniform 3x3 stacks, not AlexNet's 11x11 and 5x5 filters, made the trick matter.
