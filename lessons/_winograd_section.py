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
