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
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## The numbers the lecture quotes (slides 2–6, 15, 24–26)
#
# The winning top-5 errors on the test set, year by year, as the challenge's overview paper
# (Russakovsky et al. 2015) and the slides report them. 2012's runner-up (SIFT + Fisher vectors, a
# fixed feature pipeline) is the best the pre-ConvNet recipe reached; from 2013 on every winner is a
# ConvNet (2013: Clarifai, a ZF-style net; ZF's own entry scored 14.8%).

# %%
import matplotlib.pyplot as plt
plt.rcParams.update({"figure.dpi": 100})          # every figure >= 400 px on its short side
entries = [("2012 runner-up\nSIFT + Fisher vectors", 26.2), ("2012\nAlexNet", 16.4),
           ("2013\nClarifai (ZF-style)", 11.7), ("2014\nGoogLeNet", 6.67), ("2015\nResNet", 3.57)]
fig, ax = plt.subplots(figsize=(9, 5))
bars = ax.bar([e[0] for e in entries], [e[1] for e in entries],
              color=["tab:gray"] + ["tab:blue"] * 4)
ax.bar_label(bars, fmt="%.1f%%")
ax.set_ylabel("top-5 error (%)")
ax.set_title("ILSVRC classification: winning top-5 error (grey: fixed features, blue: ConvNets)")
plt.show()
print(f"2012: AlexNet removed {26.2 - 16.4:.1f} points, {100 * (26.2 - 16.4) / 26.2:.0f}% of the runner-up's errors; "
      f"2012 -> 2015: {16.4 / 3.57:.1f}x fewer errors")

# %% [markdown]
# ## Why five guesses: the 1,000 class names
#
# minidl ships the 1,000 ILSVRC-2012 class names in the index order of the pretrained weights
# (`minidl.imagenet_classes.IMAGENET_CLASSES`). Reading them shows why a single guess is a harsh
# score: the label set is full of fine-grained neighbours. The dog breeds form one contiguous block,
# from Chihuahua to Mexican hairless:

# %%
from minidl.imagenet_classes import IMAGENET_CLASSES as NAMES
first, last = NAMES.index("Chihuahua"), NAMES.index("Mexican hairless")
dogs = NAMES[first:last + 1]
print(f"{len(NAMES)} classes; dog breeds are indices {first}..{last}: {len(dogs)} classes "
      f"({100 * len(dogs) / len(NAMES):.1f}% of the label set)")
for word in ("terrier", "retriever", "spaniel", "hound", "setter"):
    names = [n for n in dogs if word in n.lower()]
    print(f"  {len(names):2d} x '{word}': {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
t = NAMES.index("tabby")
print(f"indices {t - 2}..{t + 7}:", ", ".join(NAMES[t - 2:t + 8]))
pairs = [(a, b) for a in NAMES for b in NAMES if b.startswith(a + " ")]   # one class name opens another
print(f"{len(pairs)} pairs of classes where one name is the start of the other:",
      "; ".join(f"{a} / {b}" for a, b in pairs))

# %% [markdown]
# A photo of a striped cat may be labelled *tabby* or *tiger cat*, and *tiger* (the big cat) is a class
# of its own; *crane* (the machine) and *crane bird* are two classes; and a photo usually shows more
# than one of the 1,000 things. Top-5 error forgives the first
# four wrong guesses, so it measures whether a net has found the right neighbourhood.

# %% [markdown]
# ## Five guesses of a trained AlexNet on two photos
#
# Where torchvision's ImageNet weights for AlexNet are cached on this machine (PyTorch's cache or
# minidl's; a lesson never downloads), minidl's torchvision-layout AlexNet
# (`models.get_model("alexnet_torchvision")`) loads them and classifies scikit-learn's two sample
# photos with the test protocol of those weights: shorter side resized to 256, the centre 224x224
# (the yellow box), ImageNet mean/std — what `minidl classify --model alexnet_torchvision
# --pretrained` does. The cell prints each photo's five most probable classes with their softmax
# probabilities; neither photo has an ImageNet label, so these are guesses to read, not an error to
# score. Without the weights it says where it looked and how to get them.

# %%
from lessonlib import photos, pretrained_alexnet, missing_weights_message, top5, show_png
alex = pretrained_alexnet()
if alex is None:
    print(missing_weights_message())
else:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    for ax, pic, name in zip(axes, photos(), ("china.jpg", "flower.jpg")):
        best = top5(alex, pic)
        print(f"{name}: " + "; ".join(f"{rank}. {label} ({c}) {100 * p:.1f}%" for rank, (c, label, p) in enumerate(best, 1))
              + f"   (top-5 hold {100 * sum(p for _, _, p in best):.1f}% of the probability)")
        h, w = pic.shape[:2]
        side = 224 * min(h, w) / 256                       # the centre crop, in the photo's own pixels
        ax.imshow(pic)
        ax.add_patch(plt.Rectangle(((w - side) / 2, (h - side) / 2), side, side, fill=False, color="yellow", lw=2))
        ax.set_title(f"{name}\n" + "\n".join(f"{100 * p:.1f}%  {label}" for _, label, p in best), fontsize=10, loc="left")
        ax.axis("off")
    fig.tight_layout(); show_png(fig)

# %% [markdown]
# ## Exercise: write the top-k error
#
# `scores` is an `(N, classes)` array, `targets` the `(N,)` true classes. Return the fraction of
# rows whose target is **not** among the `k` highest scores. Replace the stub below, then run the
# check cell: the grader compares with `minidl.metrics.topk_error` for several k, ties included.

# %%
# The stub of assignment task `topk_error`: replace each NotImplementedError with your code.
def topk_error(scores, targets, k=5):
    """scores (N, classes), targets (N,) ints -> the fraction of rows whose target is not among the
    k highest scores (a float in [0, 1])."""
    raise NotImplementedError("topk_error: the k best classes of each row (np.argsort of -scores), then the "
                              "fraction of rows missing their target")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("topk_error", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("topk_error")   # the worked solution file, graded as yours would be
assert assignments.check("topk_error", solution).passed
topk_error = solution.topk_error   # the notebook goes on with these

# %% [markdown]
# ## What chance gives
#
# A classifier that guesses at random has top-1 error 1 - 1/C and top-5 error 1 - 5/C. With 1,000
# classes that is 99.9% and 99.5%; on our 10-class digits top-5 chance is already 50%, which is why
# on small label sets the top-1 error is the one to watch. Measured on random scores:

# %%
rng = np.random.default_rng(0)
n = pick(2000, 20000)
for C in (1000, 10):
    s, t = rng.standard_normal((n, C)), rng.integers(0, C, n)
    e1, e5 = topk_error(s, t, 1), topk_error(s, t, 5)
    print(f"{C:5d} classes: random top-1 error {100 * e1:.1f}% (theory {100 * (1 - 1 / C):.1f}%), "
          f"top-5 {100 * e5:.1f}% (theory {100 * (1 - 5 / C):.1f}%)")

# %% [markdown]
# ## A fixed feature pipeline against the same net trained end to end
#
# Before 2012 the features were designed, not learned: SIFT computes histograms of local gradient
# orientations, Fisher vectors encode them, and only a linear classifier on top is trained. We build
# the small-scale analogue on 16x16 digits with one two-stage net (conv 5x5 → ReLU → pool → conv 3x3
# → ReLU → pool → linear classifier) in three versions, all from the same random initialisation per
# seed, on the same batches for the same number of epochs:
#
# - **fixed, hand-set**: the first layer is a bank of 8 oriented edge filters (derivatives of a
#   Gaussian, the gradient orientations SIFT histograms), the second stays at its random init; both
#   frozen, only the classifier learns;
# - **fixed, random**: both conv layers frozen at their random init, only the classifier learns;
# - **learned end to end**: the same net, every layer trained.

# %%
from lessonlib import fixed_vs_learned, edge_bank, FEATURE_PIPELINES
seeds, epochs = pick((0, 1, 2), (0, 1, 2, 3, 4)), pick(5, 15)
errors, nets = fixed_vs_learned(seeds=seeds, n_train=pick(1024, None), epochs=epochs)
from minidl.data import Digits
print(f"held-out error on all {len(Digits(train=False, size=16))} held-out digits after {epochs} epochs, seeds {seeds}:")
for name in FEATURE_PIPELINES:
    val = 100 * np.array([v for _, v in errors[name]])
    train_err = 100 * np.array([t for t, _ in errors[name]])
    print(f"  {name:38s} {val.mean():5.1f}% ± {val.std():.1f}  (per seed {', '.join(f'{v:.1f}' for v in val)}; "
          f"training error {train_err.mean():.1f}%)")
learned = np.array([v for _, v in errors["learned end to end"]])
handset = np.array([v for _, v in errors[FEATURE_PIPELINES[0]]])
print(f"learned end to end beats the hand-set pipeline in {int((learned < handset).sum())} of {len(seeds)} seeds")

# %%
fig, axes = plt.subplots(4, 4, figsize=(7, 7))
learned_w = nets["learned end to end"][0].weight.numpy()
for i in range(8):
    for group, (w, label) in enumerate(((edge_bank()[i, 0], "hand-set"), (learned_w[i, 0], "learned"))):
        ax = axes[2 * group + i // 4, i % 4]
        ax.imshow(w, cmap="gray")
        ax.set_xticks([]); ax.set_yticks([])
        if i % 4 == 0:
            ax.set_ylabel(label)
fig.suptitle("first-layer filters (5x5): the hand-set edge bank (top),\nthe net's own after training end to end (bottom, seed 0)")
plt.show()

# %% [markdown]
# The printout above is the measurement: the net that learns its own features end to end reaches a
# lower held-out error than the same net with designed (or random) features frozen, from the same
# start and with the same data. On ImageNet the gap was 26.2% → 16.4% top-5; here ten digit
# classes leave little room for ambiguity, so we compare top-1 errors.
