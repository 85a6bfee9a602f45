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
# # 07 · VGG: stacks of 3x3 convolutions
#
# VGG (Simonyan & Zisserman 2014) uses only 3x3 convolutions with stride 1 and padding 1, several in
# a row between 2x2 max-pools. Two stacked 3x3 layers see a 5x5 window of the input, three see 7x7
# — the same as one large filter, with fewer weights and a non-linearity after every layer.

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
from minidl.visualize import receptive_field
for n in (1, 2, 3, 4):
    stack = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(n)]
    print(f"{n} stacked 3x3 convs: receptive field {receptive_field(stack)[-1].size}x{receptive_field(stack)[-1].size}")

# %% [markdown]
# ## Measured, not just computed
#
# Back-propagate from the centre unit of the last layer: the input pixels with a non-zero gradient
# are exactly those the unit can see.

# %%
for n in (1, 2, 3):
    md.manual_seed(0)
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(n)])
    x = md.tensor(np.zeros((1, 1, 15, 15)), requires_grad=True, dtype="float32")
    y = stack(x)
    y[0, 0, 7, 7].backward()
    rows, cols = np.nonzero(x.grad[0, 0])
    print(f"{n} layers: gradient reaches rows {rows.min()}..{rows.max()}, columns {cols.min()}..{cols.max()} "
          f"-> {rows.max() - rows.min() + 1}x{cols.max() - cols.min() + 1}")

# %% [markdown]
# ## The effective receptive field, as a picture
#
# The rows and columns above say *where* the gradient is non-zero. How much each input pixel
# matters is |dx|, the size of the gradient that one output unit (the centre unit of channel 0 of
# the last layer) sends back to the input. Two kinds of stack, for 1, 2 and 3 layers of 3x3:
#
# - **uniform weights (1/9), no non-linearity**: |dx| is the box filter convolved with itself n
#   times — flat, then a pyramid, then a bell;
# - **random weights (default init, 8 channels) with a ReLU after each conv**, |dx| averaged over
#   many random nets and random inputs.
#
# The red square is the theoretical field, (2n+1) x (2n+1). The printout gives the share of the
# total |dx| that falls on the central 3x3 pixels.

# %%
import matplotlib.pyplot as plt
plt.rcParams.update({"figure.dpi": 100})          # every figure >= 400 px on its short side

def input_gradient(n, kind, seed, size=15, channels=8):
    """|dx| (size, size) of the centre unit of channel 0 after n stacked 3x3 convs."""
    md.manual_seed(seed)
    layers = []
    for i in range(n):
        if kind == "uniform":
            conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
            conv.weight.data[...] = 1 / 9
            layers.append(conv)
        else:
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1), nn.ReLU()]
    x = md.tensor(np.random.default_rng(seed).standard_normal((1, 1, size, size)), requires_grad=True, dtype="float32")
    nn.Sequential(*layers)(x)[0, 0, size // 2, size // 2].backward()
    return np.abs(x.grad[0, 0])

nets = pick(20, 200)
kinds = {"uniform": "uniform 1/9 weights, linear", "random": f"random weights + ReLU, mean of {nets} nets"}
fig, axes = plt.subplots(2, 3, figsize=(10, 7))
for row, kind in enumerate(kinds):
    for col, n in enumerate((1, 2, 3)):
        g = np.mean([input_gradient(n, kind, s) for s in range(nets if kind == "random" else 1)], axis=0)
        ax = axes[row, col]
        ax.imshow(g / g.max(), cmap="magma", vmin=0, vmax=1)
        ax.add_patch(plt.Rectangle((7 - n - 0.5, 7 - n - 0.5), 2 * n + 1, 2 * n + 1, fill=False, ec="red", lw=1.5))
        ax.set_xticks([]); ax.set_yticks([])
        ax.set_title(f"{n} layer{'s' if n > 1 else ''}: field {2 * n + 1}x{2 * n + 1}", fontsize=10)
        centre = g[6:9, 6:9].sum() / g.sum()
        print(f"{kinds[kind]:40s} {n} layer(s): {100 * centre:5.1f}% of |dx| on the central 3x3 "
              f"({100 * 9 / (2 * n + 1) ** 2:.0f}% of the field's pixels)")
    axes[row, 0].set_ylabel(kinds[kind], fontsize=9)
fig.suptitle("|dx| of one output unit (normalised to its maximum): the effective receptive field")
plt.tight_layout(); plt.show()

# %% [markdown]
# The theoretical field grows by 2 pixels per layer, but the gradient is concentrated at its centre:
# the centre pixel reaches the output through many more paths than a corner pixel (a corner pixel
# of the 7x7 field through exactly one). Stacking 3x3 layers sees far, and weighs near pixels most.

# %% [markdown]
# ## Weights: a stack against one big filter
#
# With C channels in and out (no biases): n layers of 3x3 have 9nC² weights, one (2n+1)x(2n+1)
# layer has (2n+1)²C².

# %%
C = 64
print(f"{'field':>6} {'3x3 stack':>12} {'one filter':>12} {'saving':>7} {'ReLUs':>6}")
for n in (2, 3):
    stack = sum(nn.Conv2d(C, C, 3, padding=1, bias=False).num_parameters() for _ in range(n))
    big = nn.Conv2d(C, C, 2 * n + 1, padding=n, bias=False).num_parameters()
    print(f"{2 * n + 1:>4}x{2 * n + 1:<1} {stack:>12,} {big:>12,} {100 * (1 - stack / big):>6.0f}% {n:>3} vs 1")

# %% [markdown]
# The paper's numbers: 27C² vs 49C² for 7x7, i.e. 45% fewer weights, with three non-linearities
# instead of one.
#
# ## VGG16 in numbers

# %%
cfg16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
count, cin = 0, 3
for v in cfg16:
    if v != "M":
        count += 9 * cin * v + v
        cin = v
count += (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
print(f"VGG16 parameters from its configuration: {count:,} (torchvision: 138,357,544)")
if not FAST:   # building the real model allocates 138M weights (slow-ish): full mode only
    vgg = models.vgg16()
    print(f"models.vgg16(): {vgg.num_parameters():,}")
    s = models.summary(vgg, (3, 224, 224))
    print(f"multiply-adds per 224x224 image: {s.total_madds / 1e9:.2f} G")

# %% [markdown]
# The receptive field column of `models.summary` shows the field growing by 2 per 3x3 layer and
# doubling its step at every pool:

# %%
small = models.vgg11() if not FAST else None
feats = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
for f in receptive_field(feats):
    print(f)


# %% [markdown]
# ## Exercise: a VGG block
#
# Write `vgg_block(in_channels, out_channels, num_convs)`: that many 3x3 convolutions (stride 1,
# padding 1) each followed by a ReLU, then a 2x2 max-pool. The grader compares it, weights copied in,
# with minidl's own VGG block: output and gradients.

# %%
# The stub of assignment task `vgg_block`: replace each NotImplementedError with your code.
from minidl.models._common import ConvReLU  # conv (with bias) then ReLU; keys conv.weight, conv.bias


def vgg_block(in_channels, out_channels, num_convs):
    """nn.Sequential of num_convs x (3x3 conv, stride 1, padding 1, then ReLU), then a 2x2/2 max-pool.
    (N, in, H, W) -> (N, out, H // 2, W // 2); keys 0.weight, 0.bias, 2.weight, ..."""
    raise NotImplementedError("vgg_block: return nn.Sequential(conv, ReLU, ..., nn.MaxPool2d(2, stride=2))")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("vgg_block", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("vgg_block")   # the worked solution file, graded as yours would be
assert assignments.check("vgg_block", solution).passed
vgg_block = solution.vgg_block   # the notebook goes on with these

