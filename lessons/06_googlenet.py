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
# # 06 · GoogLeNet: Network in Network, 1x1 reductions, Inception
#
# GoogLeNet (Szegedy et al. 2014) is 22 layers deep yet has far fewer parameters than AlexNet. Its
# ideas: 1x1 convolutions from Network in Network, used to **reduce channels** before the expensive
# 3x3 and 5x5 filters; the **Inception module** running 1x1, 3x3, 5x5 and a max-pool path in
# parallel; two **auxiliary classifiers** during training; and **no fully connected layers** except
# the last (global average pooling instead).

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
# ## "12x fewer parameters than AlexNet"

# %%
goog = models.googlenet(aux_logits=False)        # the paper's net: conv biases, true 5x5, no BN
goog_aux = models.googlenet(aux_logits=True)
alex = models.alexnet()
pa, pg = alex.num_parameters(), goog.num_parameters()
print(f"AlexNet (paper) {pa:,}   GoogLeNet (paper) {pg:,}   with both aux classifiers {goog_aux.num_parameters():,}")
print(f"ratio {pa / pg:.2f}x (the slide, quoting the paper: 12x)")
print(f"AlexNet's fc6 alone: {alex.classifier.fc6.num_parameters():,}; GoogLeNet's only FC layer: {goog.fc.num_parameters():,}")

# %% [markdown]
# Counting every weight and bias of the two layer tables gives about **8.7x**, not 12x. The paper
# compares against its own AlexNet numbers; the gap is mostly AlexNet's 9216x4096 fc6, which
# GoogLeNet replaces by global average pooling.

# %% [markdown]
# ## "22 layers deep" (slide 28)
#
# The paper counts depth along the network's longest path, counting only layers with parameters
# (27 if pooling layers count too). An Inception module adds two layers to that path (1x1 reduce,
# then 3x3 or 5x5), however many branches run beside each other. We compute both counts from the
# model itself, walking its modules in forward order (the auxiliary heads are side branches, not
# on the path):

# %%
def depth(m, count_pools=False):
    """Layers on the longest input-to-output path through module m."""
    if isinstance(m, models.Inception):              # parallel branches: the deepest one counts
        return max(depth(b, count_pools) for b in (m.branch1, m.branch2, m.branch3, m.branch4))
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return 1
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return int(count_pools)
    return sum(depth(c, count_pools) for name, c in m.named_children() if not name.startswith("aux"))

d, d_pool = depth(goog), depth(goog, count_pools=True)
convs = sum(isinstance(m, nn.Conv2d) for m in goog.modules())
print(f"GoogLeNet: {d} layers with parameters on the longest path, {d_pool} with the pools "
      f"(the paper: 22 and 27); {convs} convolutions in all, side by side in the modules")
stem = depth(nn.Sequential(goog.conv1, goog.conv2, goog.conv3))
print(f"= {stem} stem convs + 9 Inception modules x {depth(goog.inception3a)} + {depth(goog.fc)} FC layer")

# %% [markdown]
# ## Network in Network: a 1x1 convolution is a per-pixel fully connected layer (slides 31–35)
#
# Lin, Chen & Yan replaced each linear filter by a small MLP slid over the image (an "mlpconv"
# block): a k x k convolution followed by two 1x1 convolutions, each with a ReLU. A 1x1
# convolution looks at one pixel only: at every position it multiplies that pixel's C-channel
# vector by the same matrix — a fully connected layer applied pixel by pixel. `models.nin()` is
# their ImageNet model; we check the claim on one of its 1x1 layers (block 2, 256 → 256 channels):

# %%
rng = np.random.default_rng(0)
nin_net = models.nin()
conv = nin_net.block2[2]                                               # the first 1x1 conv of mlpconv block 2
w64, b64 = conv.weight.numpy().astype(np.float64), conv.bias.numpy().astype(np.float64)
x = rng.standard_normal((2, conv.in_channels, 5, 5))
y_conv = F.conv2d(md.tensor(x), md.tensor(w64), md.tensor(b64)).numpy()
pixels = x.transpose(0, 2, 3, 1).reshape(-1, conv.in_channels)       # every pixel is a 256-vector
y_fc = (pixels @ w64.reshape(conv.out_channels, -1).T + b64).reshape(2, 5, 5, -1).transpose(0, 3, 1, 2)
print(f"1x1 conv, weight {w64.shape}: the same linear layer at every pixel:", np.allclose(y_conv, y_fc))

mods = dict(nin_net.named_modules())
rows = [r for r in models.summary(nin_net, (3, 224, 224)).rows if r.kind == "Conv2d"]
one = [r for r in rows if mods[r.name].kernel_size == (1, 1)]
print(f"NiN: {nin_net.num_parameters():,} parameters; {len(one)} of its {len(rows)} convolutions are 1x1, with "
      f"{100 * sum(r.params for r in one) / nin_net.num_parameters():.0f}% of the parameters and "
      f"{100 * sum(r.madds for r in one) / sum(r.madds for r in rows):.0f}% of the multiply-adds; "
      f"fully connected layers: {sum(isinstance(m, nn.Linear) for m in nin_net.modules())} "
      f"(the last block outputs one map per class; global average pooling turns each into a score)")

# %% [markdown]
# The 1x1 layers make each filter a non-linear function of its window at a fraction of the cost of
# the k x k layers. GoogLeNet keeps the idea but uses 1x1 layers above all to **reduce** channels
# (c3 < c2, each followed by a ReLU) before the expensive 3x3 and 5x5 filters, and runs 3x3 and 5x5
# side by side to see two scales at once.

# %% [markdown]
# ## What the 1x1 reductions save (slides 36–37)
#
# Inception 3a receives 192 channels at 28x28. We count multiply-adds with `models.summary` for the
# module as built (1x1 reductions to 96 and 16 channels before the 3x3 and 5x5) and for a naive
# module with the same output widths but no reductions.

# %%
class NaiveInception(nn.Module):
    def __init__(self, cin, c1, c3, c5):
        super().__init__()
        self.b1, self.b3, self.b5 = nn.Conv2d(cin, c1, 1), nn.Conv2d(cin, c3, 3, padding=1), nn.Conv2d(cin, c5, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
    def forward(self, x):
        return F.concat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], axis=1)

inc = models.Inception(192, 64, 96, 128, 16, 32, 32)
naive = NaiveInception(192, 64, 128, 32)
s_inc, s_naive = models.summary(inc, (192, 28, 28)), models.summary(naive, (192, 28, 28))
print(f"Inception 3a: {s_inc.total_madds / 1e6:.1f} M multiply-adds, {inc.num_parameters():,} parameters, output {s_inc.output_shapes}")
print(f"naive module: {s_naive.total_madds / 1e6:.1f} M multiply-adds, {naive.num_parameters():,} parameters, output {s_naive.output_shapes}")
print(f"saved: {s_naive.total_madds / s_inc.total_madds:.1f}x fewer multiply-adds")
five_direct = 28 * 28 * 32 * 192 * 25
five_reduced = 28 * 28 * 16 * 192 + 28 * 28 * 32 * 16 * 25
print(f"the 5x5 branch alone: {five_direct / 1e6:.1f} M direct vs {five_reduced / 1e6:.1f} M with the 16-channel reduction")

# %% [markdown]
# The naive module also outputs 64 + 128 + 32 + 192 = 416 channels (the pool path passes all 192 through),
# so the next layer would grow too; the pool projection keeps the width at 256.
#
# ## The parallel pooling path
#
# A 3x3 stride-1 max-pool barely changes when its input moves by one pixel: part of the local
# shift invariance the slide mentions. Measured on random feature maps shifted by one column:

# %%
a = rng.random((1, 8, 16, 16))
shifted = np.roll(a, 1, axis=3)
pool = lambda z: F.max_pool2d(md.tensor(z), 3, 1, 1).numpy()
def change(p, q):
    return np.abs(p[..., 2:-2] - q[..., 2:-2]).mean() / np.abs(p[..., 2:-2]).mean()
print(f"relative change after a 1-pixel shift: raw {change(a, shifted):.2f}, after 3x3 max-pool {change(pool(a), pool(shifted)):.2f}")

# %% [markdown]
# ## Auxiliary classifiers
#
# GoogLeNet adds two small classifiers on intermediate layers during training (loss weight 0.3) so
# that gradient reaches the lower layers directly. Measured on a deep plain net: the gradient at
# the first layer with the main loss only, and with an auxiliary head after layer 3.

# %%
xtr, ytr, _, _ = digits(64, 1, size=16)

class DeepNet(nn.Module):
    def __init__(self, depth=10, width=8):
        super().__init__()
        md.manual_seed(0)
        self.convs = nn.Sequential(*[nn.Sequential(nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.Tanh())
                                     for i in range(depth)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
        self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
    def forward(self, x):
        h = x
        for i, block in enumerate(self.convs):
            h = block(h)
            if i == 2:
                mid = h
        return self.head(h), self.aux(mid)

net = DeepNet()
for use_aux in (False, True):
    net.zero_grad()
    main, aux = net(md.tensor(xtr))
    loss = F.cross_entropy(main, ytr) + (0.3 * F.cross_entropy(aux, ytr) if use_aux else 0)
    loss.backward()
    g = np.linalg.norm(net.convs[0][0].weight.grad)
    print(f"aux head {'on ' if use_aux else 'off'}: |dL/dW| of the first conv = {g:.2e}")

# %% [markdown]
# ## Exercise: an Inception module
#
# Four branches on the same input, concatenated along channels. The grader copies the weights of
# `models.googlenet`'s own `Inception` into yours and compares output, input gradient and every
# parameter gradient: a module that drops a branch or concatenates them in another order fails.

# %%
# The stub of assignment task `inception`: replace each NotImplementedError with your code.
from minidl.models._common import ConvReLU  # conv (with bias) then ReLU; keys conv.weight, conv.bias


class Inception(nn.Module):
    """Four branches on the same input, concatenated along channels in this order:
    branch1 = ConvReLU(in, ch1x1, 1)
    branch2 = Sequential(ConvReLU(in, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
    branch3 = Sequential(ConvReLU(in, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
    branch4 = Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True), ConvReLU(in, pool_proj, 1))
    (N, in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        raise NotImplementedError("inception: build branch1 ... branch4 as the docstring says")

    def forward(self, x):
        raise NotImplementedError("inception: run the four branches on x and concatenate them (F.concat, axis=1)")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("inception", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("inception")   # the worked solution file, graded as yours would be
assert assignments.check("inception", solution).passed
Inception = solution.Inception   # the notebook goes on with these

