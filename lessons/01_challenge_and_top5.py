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
# # 01 · The ImageNet challenge and the top-5 error
#
# ILSVRC (the ImageNet Large Scale Visual Recognition Challenge, 2010–2017) asked for one label out of
# **1,000 classes**, with about **1.2 million training images** and 100k test images. An entry
# could return five guesses per image; an image counts as correct when the true label is among
# them. The **top-5 error** is the fraction of images where it is not. Five guesses forgive the
# label noise of a data set where one image may show a dog, a sofa and a cushion at once.
#
# Until 2011 the best entries were hand-designed pipelines (SIFT descriptors encoded as Fisher
# vectors, then linear classifiers). In 2012 a convolutional network trained end to end cut the
# error by about ten points. This notebook defines the metric, measures it, and shows the jump.

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
# ## The numbers the lecture quotes
#
# Top-5 errors as the papers report them (test set unless noted): the 2012 runner-up with SIFT +
# Fisher vectors 26.2%, AlexNet 16.4% (five CNNs; 15.3% with seven), ZF 2013 14.8%, VGG 2014 7.3%,
# GoogLeNet 2014 6.67%, ResNet 2015 3.57%.

# %%
from minidl.visualize import bar_chart
labels = ["SIFT+FV", "AlexNet", "ZF", "VGG", "GoogLeNet", "ResNet"]
top5 = [26.2, 16.4, 14.8, 7.3, 6.67, 3.57]
show(bar_chart(labels, top5, title="ILSVRC top-5 error (%), 2012-2015", fmt="{:.1f}"))
print(f"2012: AlexNet removed {26.2 - 16.4:.1f} points, {100 * (26.2 - 16.4) / 26.2:.0f}% of the runner-up's errors")


# %% [markdown]
# ## Exercise: write the top-k error
#
# `scores` is an `(N, classes)` array, `targets` the `(N,)` true classes. Return the fraction of
# rows whose target is **not** among the `k` highest scores. Replace the body below, then run the
# check cell.

# %%
def my_topk_error(scores, targets, k=5):
    # EXERCISE: your code here (hint: np.argsort along axis 1)
    return None


# %%
from minidl.metrics import topk_error
rng = np.random.default_rng(0)
S, T = rng.standard_normal((500, 20)), rng.integers(0, 20, 500)

def check_topk(fn):
    for k in (1, 5, 20):
        got, want = fn(S, T, k), topk_error(S, T, k)
        if got is None or not np.isclose(got, want):
            print(f"k={k}: got {got}, expected {want:.4f}  -> not yet right")
            return False
    print("top-k error: PASS (k = 1, 5, 20 agree with minidl.metrics.topk_error)")
    return True

check_topk(my_topk_error)

# %% [markdown]
# The solution lives in `solutions/topk.py`; importing it lets the notebook run on.

# %%
from solutions.topk import topk_error as my_topk_error
assert check_topk(my_topk_error)

# %% [markdown]
# ## What chance gives
#
# A classifier that guesses at random has top-1 error 1 - 1/C and top-5 error 1 - 5/C. With 1,000
# classes that is 99.9% and 99.5%; on our 10-class digits top-5 chance is already 50%, which is why
# on small label sets the top-1 error is the one to watch. Measured on random scores:

# %%
n = pick(2000, 20000)
for C in (1000, 10):
    s, t = rng.standard_normal((n, C)), rng.integers(0, C, n)
    e1, e5 = my_topk_error(s, t, 1), my_topk_error(s, t, 5)
    print(f"{C:5d} classes: random top-1 error {100 * e1:.1f}% (theory {100 * (1 - 1 / C):.1f}%), "
          f"top-5 {100 * e5:.1f}% (theory {100 * (1 - 5 / C):.1f}%)")

# %% [markdown]
# ## Fixed features vs learned features, on a small scale
#
# The pre-2012 recipe fixed the features and learned only a linear classifier on top. We can mimic
# the contrast on handwritten digits: a linear classifier on the raw pixels against a small ConvNet
# that learns its own features, both trained for the same few epochs.

# %%
xtr, ytr, xva, yva = digits(pick(512, None), pick(256, None))
epochs = pick(2, 8)
md.manual_seed(0)
linear = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))
convnet = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
from minidl.metrics import predict
for name, net in (("linear on pixels", linear), ("small ConvNet", convnet)):
    h = train(net, xtr, ytr, epochs=epochs, lr=0.05, batch_size=32)
    net.eval()
    p = predict(net, xva)
    print(f"{name:17s} held-out top-1 error {100 * my_topk_error(p, yva, 1):5.1f}%   "
          f"top-5 {100 * my_topk_error(p, yva, 5):4.1f}%   ({h['seconds']:.1f} s)")

# %% [markdown]
# On ImageNet the gap was 26.2% → 16.4% top-5. Here the learned features also win, and the top-5
# errors of both are small because ten classes leave little room for ambiguity.
