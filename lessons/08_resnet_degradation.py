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
# # 08 · ResNet: deeper plain nets train worse; shortcuts fix it
#
# He et al. (2015) observed that a plain 34-layer network has *higher training error* than an
# 18-layer one — not overfitting but an optimisation difficulty (the "degradation" problem). Their
# fix: let a block learn a residual F(x) and output F(x) + x. An identity is then easy (F = 0), and
# with shortcuts the deeper net wins. ResNet-152 reached 3.57% top-5 in ILSVRC 2015.
#
# We reproduce the experiment in miniature: plain and residual nets of two depths, same data, same
# schedule. First, the building block is an exercise.

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


# %% [markdown]
# ## Exercise: the basic residual block
#
# Two 3x3 convolutions (no bias) each followed by batch norm, a ReLU between them; the input added
# to the result before the final ReLU. With `shortcut=False` the same block without the addition
# (the plain net's block).

# %%
class MyResidualBlock(nn.Module):
    def __init__(self, channels, shortcut=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.shortcut = shortcut

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out)     # EXERCISE: add the shortcut when self.shortcut is True

def check_block(cls):
    md.manual_seed(0)
    block = cls(2)
    for p in (block.bn2.weight, block.bn2.bias):   # F(x) = 0: a residual block must then pass relu(x) through
        p.data[:] = 0
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    identity = np.allclose(block(md.tensor(x)).numpy(), np.maximum(x, 0), atol=1e-6)
    print("with F(x) = 0 the block outputs relu(x):", identity)
    md.manual_seed(0)
    return check_layer(cls(2), shapes=[(2, 2, 3, 3)], name=cls.__name__) and identity

check_block(MyResidualBlock)

# %%
from solutions.residual import ResidualBlock as MyResidualBlock
assert check_block(MyResidualBlock)

# %% [markdown]
# ## Plain vs residual, shallow vs deep
#
# **Fast mode** uses fully connected twins of the CIFAR nets (`lessonlib.DenseNet`): a Linear +
# BatchNorm + ReLU stem, blocks like the one above with `Linear` in place of `Conv2d`, all 32 units
# wide, and a linear classifier. Shallow = 4 weight layers, deep = 20; each plain or residual. All
# four train on the same 512 digits (16x16, flattened) for 300 SGD steps (batch 32, lr 0.01,
# momentum 0.9), for seeds 0, 1 and 2; within a seed every net gets the same random stream and the
# same batches. We record the error on the whole training set every 20 steps.
#
# **Full mode** trains the library's CIFAR-style conv nets instead (`models.plain_cifar` /
# `models.resnet_cifar`, 20 vs 56 layers) on all 32x32 digits for 12 epochs, one seed.

# %%
from minidl.visualize import line_plot
from lessonlib import degradation, final_error

if FAST:
    depths, every = (4, 20), 20
    runs = degradation(depths=depths, seeds=(0, 1, 2), steps=300, n=512, width=32, lr=0.01, every=every)
    xlabel = "step"
else:
    xtr, ytr, xva, yva = digits(None, None, size=32)
    xtr = np.repeat(xtr, 3, axis=1)
    depths, every, runs = (20, 56), 1, {}
    for shortcut in (False, True):
        for d in depths:
            md.manual_seed(0)
            net = models.resnet_cifar(d) if shortcut else models.plain_cifar(d)
            h = train(net, xtr, ytr, epochs=12, lr=0.05, batch_size=32, weight_decay=1e-4)
            runs[f"{'residual' if shortcut else 'plain'}-{d}"] = [h["train_error"]]
            print(f"{'residual' if shortcut else 'plain'}-{d}: {h['seconds']:.0f} s")
    xlabel = "epoch"

final = {k: [final_error(c) for c in cs] for k, cs in runs.items()}     # mean of the last quarter of each curve
for k, errs in final.items():
    print(f"{k:12s} training error at the end, per seed: " + "  ".join(f"{100 * e:5.1f}%" for e in errs))

# %% [markdown]
# Two panels, as in the paper's Figure 4: plain nets on the left, residual nets on the right; thin =
# shallow, bold = deep; the mean over seeds.

# %%
from minidl.visualize.plots import COLORS
shallow, deep = depths
def panel(kind):
    series = {f"{kind}-{d}": (100 * np.mean(runs[f"{kind}-{d}"], axis=0),
                              {"color": COLORS[i], "width": 1 + 2 * i, "x": every * np.arange(1, len(runs[f"{kind}-{d}"][0]) + 1)})
              for i, d in enumerate(depths)}
    return line_plot(series, title=f"{kind}: training error (%)", xlabel=xlabel, size=(400, 300), ylim=(0, 100 * max(max(max(c) for c in cs) for cs in runs.values())))
show(panel("plain"), panel("residual"))


# %%
def mean(k):
    return float(np.mean(final[k]))
seeds = len(final[f"plain-{deep}"])
worse = sum(a > b for a, b in zip(final[f"plain-{deep}"], final[f"plain-{shallow}"]))
print(f"plain:    {deep} layers {100 * mean(f'plain-{deep}'):.1f}% vs {shallow} layers {100 * mean(f'plain-{shallow}'):.1f}%"
      f"  -> the deeper plain net is worse in {worse} of {seeds} seeds (degradation)")
gap = [a - b for a, b in zip(final[f"residual-{deep}"], final[f"residual-{shallow}"])]
print(f"residual: {deep} layers {100 * mean(f'residual-{deep}'):.1f}% vs {shallow} layers {100 * mean(f'residual-{shallow}'):.1f}%"
      f"  -> deep minus shallow: " + ", ".join(f"{100 * g:+.1f}" for g in gap) + " points")
print(f"at {deep} layers the shortcuts cut the training error from {100 * mean(f'plain-{deep}'):.1f}% to {100 * mean(f'residual-{deep}'):.1f}%")

# %% [markdown]
# **What we measured** in fast mode: the 20-layer plain net ends at about 17–21% training error,
# the 4-layer one at about 0.1% — the deeper plain net is much *worse*, in every seed, and it is
# the training error, so this is not overfitting. With shortcuts, the same 20 layers reach about
# 0.2–1.1%, within about one point of the 4-layer nets. So the degradation is gone — the deeper
# residual net trains about as well as the shallow one — but at this budget it is not *better*:
# 300 steps on a few hundred easy digits leave nothing for 16 more layers to win. In the paper the
# 34-layer ResNet beats the 18-layer one after about 60 epochs of ImageNet (slides 49–51); full
# mode's 20- vs 56-layer conv nets are the closer, slower version of that experiment.
