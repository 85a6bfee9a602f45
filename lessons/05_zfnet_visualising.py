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
# stride 2**: fewer dead filters, more distinct ones, less aliasing in layer 2.
#
# Here: two small nets that differ only in their first layer are trained side by side; we compare
# their filters, then project units back to pixels and collect the top-9 patches of a unit.

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
from minidl.visualize import filter_grid, feature_grid, feature_maps, layer_outputs, Deconvnet, top_patches, receptive_field, line_plot
xtr, ytr, xva, yva = digits(pick(512, None), pick(256, None))

def zf_style(k1, s1, p1, width=pick(16, 32)):
    md.manual_seed(0)
    side = (32 + 2 * p1 - k1) // s1 + 1
    side = (side - 3) // 2 + 1
    return nn.Sequential(nn.Conv2d(1, width, k1, stride=s1, padding=p1), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(width, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * (side // 2) ** 2, 10))

nets = {"11x11 stride 4": zf_style(11, 4, 2), "7x7 stride 2": zf_style(7, 2, 1)}
hist = {}
for name, net in nets.items():
    hist[name] = train(net, xtr, ytr, epochs=pick(3, 10), lr=0.03, batch_size=32, x_val=xva, y_val=yva)
    print(f"{name}: held-out error {100 * hist[name]['val_error'][-1]:.1f}%  ({hist[name]['seconds']:.1f} s)")
show(line_plot({k: h["val_error"] for k, h in hist.items()}, title="held-out error", xlabel="epoch"))

# %% [markdown]
# ## Layer-1 filters
#
# Each tile is one filter, stretched to the full grey range on its own. A filter that is still
# close to its random start looks like noise; trained ones show strokes and edges.

# %%
for name, net in nets.items():
    print(name)
    show(filter_grid(net[0].weight, ncols=8, scale=pick(4, 6)))


# %% [markdown]
# Two numbers for the slide's claims. A filter is **dead** when its unit is zero (after the ReLU)
# on every held-out image; **distinctiveness** is 1 minus the mean |cosine similarity| between
# pairs of filters (1 = all different directions). Random vectors of 121 numbers are closer to
# orthogonal than random vectors of 49, so the 11x11 filters score higher before any training:
# compare each net with its own starting point (`zf_style` is seeded, so calling it again rebuilds
# the initial weights).

# %%
def dead_and_distinct(net):
    acts = layer_outputs(net, xva, ["1"])["1"]        # layer-1 activations after the ReLU, all held-out images
    dead = int((acts.max(axis=(0, 2, 3)) <= 0).sum())
    w = net[0].weight.numpy().reshape(net[0].weight.shape[0], -1)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.abs(w @ w.T)[np.triu_indices(len(w), 1)]
    return dead, 1 - cos.mean()

starts = {"11x11 stride 4": zf_style(11, 4, 2), "7x7 stride 2": zf_style(7, 2, 1)}
for name, net in nets.items():
    (d0, s0), (d1, s1) = dead_and_distinct(starts[name]), dead_and_distinct(net)
    print(f"{name:15s} dead filters {d0} -> {d1} of {net[0].weight.shape[0]}, distinctiveness {s0:.3f} -> {s1:.3f} "
          f"(initial -> trained)")

# %% [markdown]
# **What we measured** (fast mode, seeds 0–2, outside the notebook): dead filters 0–1 of 16 in
# both nets, and distinctiveness falls by about the same amount in both (0.02–0.05) as the filters
# pick up shared strokes. So the slide's "fewer dead, more distinctive filters" is **not shown** at
# this scale: the paper saw it in 96 filters trained for days on ImageNet photos. What does show,
# in every seed, is the held-out error: about 17–45% with 7x7 stride 2 against 56–71% with 11x11
# stride 4. On 32x32 digits the coarse stride leaves a 7x7 map after conv1 (16x16 with stride 2),
# and whatever falls between the samples is lost — the aliasing ZF pointed to in AlexNet's layer 2.
# Full mode (no MINIDL_FAST) trains longer on all digits.
#
# ## Feature maps and the deconvnet
#
# The feature maps of layer 2 (after its ReLU) for one digit, then the deconvnet projection of the
# strongest unit of layer 1 and of layer 2 back to pixels (grey = 0, light = positive).

# %%
net = nets["7x7 stride 2"]
img = xva[0]
show(feature_grid(feature_maps(net, img, 4), ncols=8, scale=4))
dn = Deconvnet(net[:6])
for layer in (1, 4):
    r = dn.project(img, layer)
    print(r)
    show(r.image(scale=4))

# %% [markdown]
# ### Top-9 patches of a layer-2 unit
#
# Over the held-out set, the nine images where one channel of layer 2 responds most, each cropped
# to the unit's receptive field — and next to them the deconvnet projections of the same units.

# %%
field = receptive_field(net[:6])[4]
print(field)
r = dn.project(img, 4)
tp = top_patches(net[:6], xva, layer=4, channel=r.channel, k=9)
print("scores:", np.round(tp.scores, 2))
show(tp.grid(scale=3), tp.deconv_grid(scale=3))


# %% [markdown]
# ## Exercise: max-pooling with switches
#
# The deconvnet's unpooling is the backward pass of max-pooling: the gradient goes to the element
# that was the maximum (the *switch*). Finish `backward` of this 3x3 stride-2 max-pool, which
# records its switches as input rows and columns.

# %%
class MyMaxPool(md.Function):
    def __init__(self, k=3, s=2):
        self.k, self.s = k, s

    def forward(self, x):
        N, C, H, W = x.shape
        k, s = self.k, self.s
        oh, ow = (H - k) // s + 1, (W - k) // s + 1
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        flat = win.reshape(N, C, oh, ow, k * k)
        arg = flat.argmax(axis=-1)
        di, dj = np.divmod(arg, k)
        self.rows = np.arange(oh)[:, None] * s + di       # switch: the input row of every maximum
        self.cols = np.arange(ow)[None, :] * s + dj       # ... and its column
        self.x_shape = x.shape
        return flat.max(axis=-1)

    def backward(self, gy):
        N, C, H, W = self.x_shape
        gx = np.zeros(self.x_shape, dtype=gy.dtype)
        # EXERCISE: this puts every gradient at the top-left corner of its window; use the switches
        oh, ow = gy.shape[2:]
        for i in range(oh):
            for j in range(ow):
                gx[:, :, i * self.s, j * self.s] += gy[:, :, i, j]
        return gx

result = check_layer(MyMaxPool, reference=lambda x: F.max_pool2d(x, 3, 2), shapes=[(2, 3, 7, 7)])

# %%
from solutions.maxpool import MaxPoolSwitches
assert check_layer(lambda x: MaxPoolSwitches(3, 2)(x), reference=lambda x: F.max_pool2d(x, 3, 2), shapes=[(2, 3, 7, 7)])
