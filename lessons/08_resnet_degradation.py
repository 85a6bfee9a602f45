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
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")


# %% [markdown]
# ## Exercise: the basic residual block
#
# Two 3x3 convolutions (no bias) each followed by batch norm, a ReLU between them; the input added
# to the result before the final ReLU. With `shortcut=False` the same block without the addition
# (the plain net's block). The grader compares it, weights copied in, with `models.resnet.BasicBlock`.

# %%
# The stub of assignment task `basic_block`: replace each NotImplementedError with your code.
from minidl.models._common import ConvReLU  # conv (with bias) then ReLU; keys conv.weight, conv.bias


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut), shortcut = x, or downsample(x) when given;
    shortcut=False: no addition (the plain net's block).
    conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False), bn1 = BatchNorm2d(planes),
    conv2 = Conv2d(planes, planes, 3, padding=1, bias=False), bn2 = BatchNorm2d(planes), relu = ReLU()."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None, shortcut=True):
        super().__init__()
        raise NotImplementedError("basic_block: build conv1, bn1, relu, conv2, bn2; keep downsample and shortcut")

    def forward(self, x):
        raise NotImplementedError("basic_block: the two convolutions, then relu(out + shortcut)")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("basic_block", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("basic_block")   # the worked solution file, graded as yours would be
assert assignments.check("basic_block", solution).passed
BasicBlock = solution.BasicBlock   # the notebook goes on with these

# %% [markdown]
# ## Plain vs residual, shallow vs deep
#
# The CIFAR experiment of He et al. (section 4.2) in miniature, with **conv nets**:
# `lessonlib.SmallResNet` is a 3x3 conv stem (BN, ReLU, 2x2 max-pool), then basic blocks like the
# one above (`models.resnet.BasicBlock`, 8 channels), global average pooling and a linear
# classifier; the plain net is the same stack without the additions. Shallow and deep nets of each
# kind train on the same 1,024 digits (12x12, standardised) with the same batches (32), SGD lr
# 0.02, momentum 0.9, seeds 0 and 1; every 25 steps we score 128 training digits (**thin** lines)
# and 128 held-out digits (**bold**), as on slide 49.
#
# Full mode: CIFAR-10 where it is on disk (`MINIDL_CIFAR10=/path/to/cifar-10-batches-py`; 16
# channels, 20,000 training images), else all 1,438 training digits; three seeds, ten times the steps.

# %%
import matplotlib.pyplot as plt
from lessonlib import plain_vs_residual, cifar10
cif = None if FAST else cifar10(20000, 2000)
if cif is not None:
    xtr, ytr, xva, yva = cif
    data_name, width = "CIFAR-10", 16
else:
    xtr, ytr, xva, yva = digits(pick(1024, None), pick(256, None), size=12)
    data_name, width = "digits 12x12", 8
mu, sd = xtr.mean(), xtr.std()
xtr, xva = ((xtr - mu) / sd).astype(np.float32), ((xva - mu) / sd).astype(np.float32)
depths, seeds = pick((6, 18), (6, 18)), pick((0, 1), (0, 1, 2))
steps, every = pick(150, 1500), pick(25, 100)
runs = plain_vs_residual(xtr, ytr, xva, yva, depths=depths, seeds=seeds, steps=steps, lr=0.02, batch_size=32,
                         width=width, every=every, n_eval=pick(128, 512))
for k, r in runs.items():
    print(f"{k:12s} final training error " + ", ".join(f"{100 * c[-1]:5.1f}%" for c in r["train"])
          + "   held-out " + ", ".join(f"{100 * c[-1]:5.1f}%" for c in r["val"]) + f"   ({r['seconds']:.0f} s)")

# %%
shallow, deep = depths
xs = every * np.arange(1, steps // every + 1)
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
for ax, kind in zip(axes, ("plain", "residual")):
    for d, color in ((shallow, "C0"), (deep, "C3")):
        r = runs[f"{kind}-{d}"]
        ax.plot(xs, 100 * np.mean(r["train"], axis=0), color=color, lw=1, label=f"{kind}-{d} training")
        ax.plot(xs, 100 * np.mean(r["val"], axis=0), color=color, lw=3.5, label=f"{kind}-{d} held-out")
    ax.set(title=f"{kind} nets on {data_name} (mean of {len(seeds)} seeds)", xlabel="step", ylabel="error (%)")
    ax.legend(); ax.grid(alpha=0.3)
fig.tight_layout(); plt.show()

# %%
def last(kind, d, which):      # mean over the last two evaluations, per seed
    return [float(np.mean(c[-2:])) for c in runs[f"{kind}-{d}"][which]]
for which in ("train", "val"):
    p_s, p_d, r_s, r_d = last("plain", shallow, which), last("plain", deep, which), last("residual", shallow, which), last("residual", deep, which)
    print(f"{'training' if which == 'train' else 'held-out'} error at the end (mean of the last two points), per seed:")
    print(f"  plain    {shallow}: " + ", ".join(f"{100 * v:.1f}%" for v in p_s) + f"   {deep}: " + ", ".join(f"{100 * v:.1f}%" for v in p_d)
          + f"   -> deep worse in {sum(b > a for a, b in zip(p_s, p_d))} of {len(seeds)} seeds")
    print(f"  residual {shallow}: " + ", ".join(f"{100 * v:.1f}%" for v in r_s) + f"   {deep}: " + ", ".join(f"{100 * v:.1f}%" for v in r_d)
          + f"   -> deep better in {sum(b < a for a, b in zip(r_s, r_d))} of {len(seeds)} seeds")
    print(f"  at {deep} layers the shortcuts change the error from {100 * np.mean(p_d):.1f}% to {100 * np.mean(r_d):.1f}%")

# %% [markdown]
# **What we measured** (the numbers above; `tests/test_lesson_claims.py` pins the fast-mode
# pattern): the deep plain net ends with a clearly *higher training* error than the shallow plain
# net, in every seed — degradation, and since it is the training error, not overfitting — and its
# held-out error follows. With shortcuts the same depth trains far better; here the deep residual
# net is even ahead of the shallow one, as the paper's 34 beats its 18 (slides 50–51). What this
# budget does not show: whether the deep plain net has *plateaued* — at 150 steps every net is
# still learning (full mode trains ten times longer) — nor how the gap looks at convergence, which
# in the paper took ImageNet and about 60 epochs.
#
# ## What the ImageNet ResNets cost
#
# Parameters and multiply-adds per 224x224 image, computed with `models.summary` (a shape-only
# pass). ResNet-50 and deeper use the **bottleneck** block (1x1 reduce to 64, 3x3 at 64, 1x1 back
# to 256) instead of two 3x3 convolutions; per block on a 56x56 map it costs about what a basic
# block at 64 channels costs, while carrying 256 channels.

# %%
rows = []
for name in ("resnet18", "resnet34", "resnet50", "resnet152"):
    s = models.summary(getattr(models, name)(), (3, 224, 224))
    rows.append((name, s.total_params, s.total_madds))
from minidl.models.resnet import BasicBlock, Bottleneck
blocks = {"basic block, 64 ch (3x3, 3x3)": (BasicBlock(64, 64), (64, 56, 56)),
          "basic block, 256 ch (3x3, 3x3)": (BasicBlock(256, 256), (256, 56, 56)),
          "bottleneck, 256 ch (1x1 64, 3x3 64, 1x1 256)": (Bottleneck(256, 64), (256, 56, 56))}
for name, (b, shape) in blocks.items():
    s = models.summary(b, shape)
    rows.append((name + " on 56x56", s.total_params, s.total_madds))
print(f"{'':48s} {'parameters':>12s} {'multiply-adds':>16s}")
for name, n, m in rows:
    print(f"{name:48s} {n:12,d} {m:16,d}  ({m / 1e9:.2f} G)")
print(f"ResNet-152 has {rows[3][1] / rows[0][1]:.1f}x the parameters of ResNet-18 and {rows[3][2] / rows[0][2]:.1f}x its multiply-adds")
print("the paper's Table 1 gives 1.8, 3.6, 3.8 and 11.3 billion FLOPs (multiply-adds) for 18/34/50/152; minidl's nets put the\n"
      "stride of a downsampling bottleneck in its 3x3 conv (torchvision's 'v1.5'), which costs more in 50 and 152")
print(f"bottleneck / basic block at 64 channels: {rows[6][2] / rows[4][2]:.2f}x the multiply-adds while carrying 4x the channels")
