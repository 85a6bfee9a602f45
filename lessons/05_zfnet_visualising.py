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
# # 05 · ZF: looking inside the network
#
# Zeiler and Fergus (2013) argued that networks were designed by trial and error, and visualised
# what the units respond to. Their **deconvnet** runs the layers in reverse: unpool with the
# switches recorded by max-pooling, rectify, and filter with the transposed weights, down to the
# pixels. Looking at AlexNet's first layers they changed conv1 from 11x11 stride 4 to **7x7
# stride 2** (slides 21–22): more distinctive filters, fewer dead ones, and no aliasing from the
# coarse stride in layer 2.
#
# Here: two small nets that differ **only** in their first layer, with the same head, trained on
# natural images; we compare their filters over seeds, show aliasing on a real photo, and project
# units back to pixels next to the patch they came from.

# %%
import os, sys
sys.path.insert(0, os.path.abspath(".."))     # minidl from this checkout, even without pip install -e .
import numpy as np
import matplotlib.pyplot as plt
import minidl as md
from minidl import nn, functional as F, models
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## The data: patches of real photographs
#
# scikit-learn ships two photographs (`china.jpg`, a temple, and `flower.jpg`, 427x640 RGB); no
# download. We shrink them to half size and cut 32x32 patches (flat ones, such as clear sky,
# skipped). The task is a synthetic label, stated plainly: **where does the patch come from** —
# which photo, upper or lower half (4 classes). It needs colour, texture and edges, and a small net
# fits its training set in a few hundred steps. Training patches come from the left 70% of each photo,
# held-out patches from the right 20%, so the two sets share no pixel.
#
# Full mode: where CIFAR-10 is on disk (`MINIDL_CIFAR10=/path/to/cifar-10-batches-py`) the same two
# nets are trained on its 10 real classes (32x32 photos) instead; else more patches, longer.

# %%
from lessonlib import photos, photo_patches, zf_comparison, filter_stats, ZF_FIRST, cifar10
cif = None if FAST else cifar10(10000, 2000)
if cif is not None:
    xtr_raw, ytr, xva_raw, yva = cif
    data_name = "CIFAR-10"
else:
    xtr_raw, ytr = photo_patches(pick(1024, 4096), 32, seed=0, gray=False, downscale=2, cols=(0, 0.7), where=True)
    xva_raw, yva = photo_patches(pick(256, 1024), 32, seed=1, gray=False, downscale=2, cols=(0.8, 1.0), where=True)
    data_name = "photo patches"
mean, std = xtr_raw.mean(axis=(0, 2, 3), keepdims=True), xtr_raw.std()
xtr, xva = (xtr_raw - mean) / std, (xva_raw - mean) / std      # the nets see standardised pixels
print(f"{data_name}: {len(xtr)} training, {len(xva)} held-out images {xtr.shape[1:]}; classes per set "
      f"{np.bincount(ytr).tolist()} / {np.bincount(yva).tolist()}")
pics = photos()
fig, axes = plt.subplots(1, 3, figsize=(11, 5.2), gridspec_kw={"width_ratios": [1.5, 1.5, 1]})
for ax, pic, name in zip(axes, pics, ("china.jpg", "flower.jpg")):
    ax.imshow(pic); ax.set_title(name, fontsize=10)
    h, w = pic.shape[:2]
    for f in (0.7 * (w - 64) + 32, 0.8 * (w - 64) + 32):
        ax.axvline(f, color="yellow", lw=2)
    ax.axhline(h / 2, color="white", lw=1, ls="--"); ax.axis("off")
from minidl.visualize.filters import tile
axes[2].imshow(tile(np.stack([(255 * p.transpose(1, 2, 0)).astype(np.uint8) for p in xtr_raw[:16]]), ncols=4, scale=4))
axes[2].set_title("16 training patches (32x32)", fontsize=10); axes[2].axis("off")
fig.suptitle("patch centres left of the first yellow line train, right of the second are held out", fontsize=10)
fig.tight_layout(); plt.show()

# %% [markdown]
# ## Two first layers, one head
#
# `lessonlib.zf_pair_net`: conv1 (16 filters, **11x11 stride 4** or **7x7 stride 2**) → ReLU →
# max-pool 3/2 → conv 3x3 (32) → ReLU → **adaptive average pool to 4x4** → linear. Whatever size
# the first layer leaves, the classifier gets the same 512 features: the two nets differ in conv1
# only. Same batches, lr 0.01, momentum 0.9, weight decay 5e-4, per seed the same random stream,
# and AlexNet's schedule: the learning rate divided by 10 at 60% and again at 85% of the steps.
# "Converged" is checked, not assumed: how much of the training loss's whole fall (from the first
# tenth of the steps to the last) came in the last tenth. Near 0 means the loss has stopped moving.

# %%
seeds = pick((0, 1), (0, 1, 2))
steps = pick(500, 3000)
zf = zf_comparison(xtr, ytr, xva, yva, seeds=seeds, steps=steps, lr=0.01, width=16, decay=(0.6, 0.85))
fig, ax = plt.subplots(figsize=(10, 5))
for k, (name, r) in enumerate(zf.items()):
    for i, l in enumerate(r["loss"]):
        ax.plot(smooth(l, 25), color=f"C{k}", lw=1.5, alpha=0.8, label=name if i == 0 else None)
ax.set(xlabel="step", ylabel="training loss (running mean of 25 steps)", title=f"{data_name}: training loss, seeds {seeds}")
ax.legend(); fig.tight_layout(); plt.show()
from lessonlib import last_tenth_share
for name, r in zf.items():
    share = [100 * last_tenth_share(l) for l in r["loss"]]
    print(f"{name:15s} training error " + ", ".join(f"{100 * e:.1f}%" for e in r["train_error"])
          + "   held-out error " + ", ".join(f"{100 * e:.1f}%" for e in r["val_error"])
          + "   share of the loss's fall in the last tenth " + ", ".join(f"{d:.1f}%" for d in share))
print(f"largest share: {max(100 * last_tenth_share(l) for r in zf.values() for l in r['loss']):.1f}%")

# %% [markdown]
# ## Layer-1 filters
#
# Each tile is one RGB filter of seed 0, stretched to the full range on its own. conv1 starts from
# small random weights (std 0.01, AlexNet's choice), so what the tiles show is mostly what training
# put there: colour-opponent blobs and bands — at this budget not yet the crisp oriented edges of
# ZF's Figure 5, which took days of ImageNet.

# %%
from minidl.visualize import filter_grid
fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
for ax, (name, r) in zip(axes, zf.items()):
    ax.imshow(filter_grid(r["nets"][0][0].weight, ncols=4, scale=1, padding=1), interpolation="nearest")
    ax.set_title(f"{name}: dead {r['dead'][0]} of 16, distinctiveness {r['distinct'][0]:.3f}"); ax.axis("off")
fig.tight_layout(); plt.show()

# %% [markdown]
# Two numbers for slide 21's claims, per seed. A filter is **dead** when its unit is zero (after the
# ReLU) on every held-out image; **distinctiveness** is 1 minus the mean |cosine similarity| over
# all pairs of filters (1: all mutually orthogonal). Random vectors of 363 numbers (11x11x3) are
# closer to orthogonal than random vectors of 147 (7x7x3), so the 11x11 filters score higher
# before any training: compare each net with its own starting point too.

# %%
for name, r in zf.items():
    print(f"{name:15s} dead filters (init -> trained) " + ", ".join(f"{a} -> {b}" for a, b in zip(r["dead0"], r["dead"]))
          + "   distinctiveness " + ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in zip(r["distinct0"], r["distinct"])))
d11, d7 = np.mean(zf["11x11 stride 4"]["distinct"]), np.mean(zf["7x7 stride 2"]["distinct"])
v11, v7 = np.mean(zf["11x11 stride 4"]["val_error"]), np.mean(zf["7x7 stride 2"]["val_error"])
print(f"mean over seeds: distinctiveness 11x11/4 {d11:.3f}, 7x7/2 {d7:.3f}; dead {np.mean(zf['11x11 stride 4']['dead']):.1f} vs "
      f"{np.mean(zf['7x7 stride 2']['dead']):.1f}; held-out error {100 * v11:.1f}% vs {100 * v7:.1f}%")
wins = sum(a < b for a, b in zip(zf["7x7 stride 2"]["val_error"], zf["11x11 stride 4"]["val_error"]))
spread = max(np.ptp(zf[k]["val_error"]) for k in zf)
print(f"held-out: 7x7/2 lower in {wins} of {len(zf['7x7 stride 2']['val_error'])} seeds, mean gap "
      f"{100 * abs(v11 - v7):.1f} points; seed-to-seed spread within one net up to {100 * spread:.1f} points")

# %% [markdown]
# **What we measured** (the numbers above; `tests/test_lesson_claims.py` pins the fast-mode
# pattern): neither net has a dead filter, in any seed, and the 7x7/2 filters end *less*
# distinctive than the 11x11/4 ones — they start less distinctive (fewer numbers per filter) and
# lose more of it in training. Both nets are trained out under their schedule: the last tenth of
# the steps brought only the small share of the loss's fall printed after the loss curves (full mode
# trains six times longer, on four times the patches).
# The held-out errors (last line above) decide nothing: the gap between the nets is of the size of
# the seed-to-seed spread. So slide 21's "more distinctive, fewer dead" is **not reproduced** at
# this scale. ZF saw the effect in AlexNet's 96 filters of
# 11x11 after long ImageNet training at a learning rate large enough to switch units off for
# good; a 16-filter net with small steps on a few hundred patches never enters that regime.
# What the smaller stride does for sure is a matter of sampling, and that needs no training:

# %% [markdown]
# ## Aliasing, shown directly
#
# Slide 22: with stride 4 the first layer's output is sampled too coarsely for what its filters
# pass, and layer 2 sees *aliases* — fine patterns folded into false coarse ones. A fixed filter
# makes this visible without any training: an oriented Gabor filter (11x11, wavelength 5 pixels,
# 45°) over the full-size temple photo, its output computed at stride 1, 2 and 4 (`F.conv2d`).
# A grid of step s can only hold frequencies up to 1/(2s) cycles per pixel (Nyquist); the filter
# passes about 0.2 cycles per pixel (0.14 along each axis), inside stride 2's limit (0.25) and
# outside stride 4's (0.125). The spectra below are of each output, in cycles per *input* pixel.

# %%
from lessonlib import gabor, strided_responses, aliased_share
gray = photos(gray=True)[0]
g = gabor(11, 5.0, np.pi / 4)
resp = strided_responses(gray, g, (1, 2, 4))
share = {s: aliased_share(resp[1], s) for s in (2, 4)}
fig, axes = plt.subplots(2, 3, figsize=(11, 7))
e = np.add.reduceat(np.add.reduceat(resp[1] ** 2, np.arange(0, 417 - 120, 8), axis=0), np.arange(0, 630 - 180, 8), axis=1)
i, j = np.unravel_index(int(np.argmax(e)), e.shape)
box = (8 * i // 4 * 4, 8 * j // 4 * 4, 120, 180)     # the 120x180 region (top, left, h, w) with the most response energy
for k, st in enumerate((1, 2, 4)):
    r = resp[st]
    t, l, hh, ww = (v // st for v in box)
    axes[0, k].imshow(r[t:t + hh, l:l + ww], cmap="gray", interpolation="nearest",
                      extent=(box[1], box[1] + box[3], box[0] + box[2], box[0]))
    axes[0, k].set_title(f"filter output, stride {st} ({r.shape[0]}x{r.shape[1]})" +
                         (f"\n{100 * share[st]:.1f}% of the energy above the grid's limit" if st > 1 else ""), fontsize=10)
    P = np.fft.fftshift(np.abs(np.fft.fft2(r - r.mean())) ** 2)
    lim = 0.5 / st
    axes[1, k].imshow(np.log10(P + 1e-12 * P.max()), cmap="magma", extent=(-lim, lim, lim, -lim))
    for s2, c in ((2, "cyan"), (4, "lime")):
        if st == 1:
            q = 0.5 / s2
            axes[1, k].plot([-q, q, q, -q, -q], [-q, -q, q, q, -q], color=c, lw=1.5, label=f"stride {s2} limit")
    axes[1, k].plot([0.14, -0.14], [0.14, -0.14], "wo", mfc="none", ms=12, label="the filter's frequency")
    axes[1, k].set(xlabel="cycles per input pixel (x)", ylabel="(y)", title=f"log power spectrum, stride {st}")
    axes[1, k].legend(fontsize=8, loc="lower left")
fig.tight_layout(); plt.show()
print(f"share of the stride-1 output's energy that a stride-2 grid folds back: {100 * share[2]:.1f}%, "
      f"a stride-4 grid: {100 * share[4]:.1f}%")

# %% [markdown]
# At stride 4 the filter's peak (white circles at ±0.14) lies outside the spectrum's range and shows
# up folded, at a wrong, lower frequency: the stripes in the top-right panel run in a false
# direction at a false spacing. Stride 2 keeps them. This is why ZF's smaller stride gave cleaner
# layer-2 features: whatever layer 1 passes above the grid's limit arrives in layer 2 as a
# different, false pattern.
#
# ## The deconvnet, next to its input
#
# For one held-out patch, both nets: the patch, then the deconvnet projection (`minidl.visualize.Deconvnet`)
# of the strongest unit of layer 1 (conv1 after ReLU) and of layer 2 (conv2 after ReLU) back to
# pixels (grey = 0). The projection shows which pixels, in which colours, drove the unit.

# %%
from minidl.visualize import Deconvnet, top_patches, receptive_field
idx = int(np.argmax(xva_raw.std(axis=(1, 2, 3))))           # the most textured held-out patch
fig, axes = plt.subplots(2, 3, figsize=(12, 8.5))
for row, (name, r) in enumerate(zf.items()):
    dn = Deconvnet(r["nets"][0][:5])
    axes[row, 0].imshow(xva_raw[idx].transpose(1, 2, 0), interpolation="nearest")
    axes[row, 0].set_title(f"{name}: input patch {idx}")
    for col, layer in ((1, 1), (2, 4)):
        pr = dn.project(xva[idx], layer)
        axes[row, col].imshow(pr.image(), interpolation="nearest")
        axes[row, col].set_title(f"layer {1 if layer == 1 else 2}, channel {pr.channel} at {pr.position}")
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout(); plt.show()

# %% [markdown]
# ### Top-9 patches of a layer-2 unit
#
# Over the held-out set, the nine patches where one channel of layer 2 (7x7/2 net, seed 0)
# responds most, each cropped to the unit's receptive field, and next to them the deconvnet
# projections of the same nine units.

# %%
net = zf["7x7 stride 2"]["nets"][0]
dn = Deconvnet(net[:5])
field = receptive_field(net[:5])[4]
print(field)
ch = dn.project(xva[idx], 4).channel
tp = top_patches(net[:5], xva, layer=4, channel=ch, k=9)
print("scores:", np.round(tp.scores, 2))
fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
for ax, im, title in zip(axes, (tp.grid(scale=4), tp.deconv_grid(scale=4)), (f"top-9 patches, channel {ch}", "their deconvnet projections")):
    ax.imshow(im, interpolation="nearest"); ax.set_title(title); ax.axis("off")
fig.tight_layout(); plt.show()

# %% [markdown]
# ## Fig. 2 with trained ImageNet weights
#
# The nets above are small and briefly trained. ZF's Fig. 2 shows units of a net trained on
# ImageNet, and torchvision's AlexNet weights are such a net (one tower, 64/192/384/256/256
# filters). Where they are cached on this machine (PyTorch's cache or minidl's; a lesson never
# downloads), this section loads them into minidl's `alexnet_torchvision` and builds the figure for
# layers 1–5, the ReLU outputs after conv1 ... conv5 of `net.features`:
#
# - the two photos cut into square crops (320 and 192 pixels wide, every 64 pixels), each resized to
#   224x224 and normalised with ImageNet's mean and std;
# - per layer, the channel whose largest activation over all crops is the largest;
# - its nine best crops (one position each, the strongest), passing over a crop whose receptive
#   field, in the photo's own pixels, covers more than half of an already chosen one's or lies more
#   than half inside it: overlapping crops see the same places, and ZF's nine come from nine images;
# - the nine cut to the unit's receptive field (`receptive_field`: 11, 51, 99, 131 and 163 pixels
#   of the 224), top row, and the deconvnet projection of each of those nine units, cut alike
#   (grey = 0), bottom row.
#
# The cell prints the channel, the nine activations and where each crop came from; what the units
# respond to is for you to read off the pictures — ZF's Fig. 2 is the one to compare with. Without
# the weights the cell says where it looked and how to get them.

# %%
from lessonlib import pretrained_alexnet, missing_weights_message, photo_crops, fig2, show_png
alex = pretrained_alexnet()
if alex is None:
    print(missing_weights_message())
else:
    raw, crops, where = photo_crops(photos())
    print(f"{len(crops)} crops of 224x224 from the two photos")
    f2 = fig2(alex, crops, raw, where)
    fig, axes = plt.subplots(2, len(f2), figsize=(11, 5.4))
    for col, unit in zip(axes.T, f2):
        grid, proj = unit.images()
        col[0].imshow(grid, interpolation="nearest")
        col[0].set_title(f"{unit.name}, channel {unit.channel}\ntop {len(unit.indices)} ({unit.field.size} px)", fontsize=9)
        col[1].imshow(proj, interpolation="nearest")
        col[1].set_title("deconvnet projections", fontsize=9)
        came = [("china" if where[j][0] == 0 else "flower") + f" {where[j][3]}px at ({where[j][1]},{where[j][2]})"
                for j in unit.indices]
        print(f"{unit.name} (features[{unit.layer}], receptive field {unit.field.size} px), channel {unit.channel}: "
              f"activations " + " ".join(f"{s:.1f}" for s in unit.scores) + "\n    crops: " + "; ".join(came))
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout(); show_png(fig)

# %% [markdown]
# ## Exercise: max-pooling with switches
#
# The deconvnet's unpooling is the backward pass of max-pooling: the gradient goes to the element
# that was the maximum (the *switch*). Write the 3x3 stride-2 max-pool (ceil mode and padding too) that
# records its switches in forward and uses them in backward; overlapping windows must sum.

# %%
# The stub of assignment task `max_pool`: replace each NotImplementedError with your code.
from minidl import Function

def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Output length of one axis: floor (or ceil, with ceil_mode) of (size + 2*padding - kernel) / stride,
    plus 1; in ceil mode the last window must start inside the input or the left padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x[n, c] over window (i, j). Forward records the "switch" of each output, the
    flat index h*W + w of its max in the input plane; backward adds gy[n, c, i, j] to gx at that switch
    (a pixel that is the max of two overlapping windows gets both gradients)."""

    def __init__(self, kernel_size=3, stride=2, padding=0, ceil_mode=False):
        self.k, self.s, self.p, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        raise NotImplementedError("max_pool: for every output (i, j) take the max of its clipped window and "
                                  "record the switch (h*W + w of the max)")

    def backward(self, gy):
        raise NotImplementedError("max_pool: add every gy[n, c, i, j] to gx at its switch (np.add.at sums repeats)")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("max_pool", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("max_pool")   # the worked solution file, graded as yours would be
assert assignments.check("max_pool", solution).passed
MaxPool2d = solution.MaxPool2d   # the notebook goes on with these

