"""Write the lesson notebooks (nbformat 4, no outputs) from the cell sources below.

    python lessons/make_notebooks.py        # rewrites lessons/0*.ipynb

Each notebook is a string: cells are separated by lines "#%% md" (markdown) and "#%%" (code).
Edit here, regenerate, and commit both this file and the .ipynb files.
"""
import os
import re

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''#%%
import os, sys
sys.path.insert(0, os.path.abspath(".."))     # minidl from this checkout, even without pip install -e .
import numpy as np
import minidl as md
from minidl import nn, functional as F, models
from minidl.testing import check_layer
from lessonlib import FAST, pick, digits, train, error_of, smooth, show
md.manual_seed(0)
print("fast mode" if FAST else "full mode")
'''

NOTEBOOKS = {}

# ================================================================================================
NOTEBOOKS["01_challenge_and_top5.ipynb"] = r'''
#%% md
# 01 · The ImageNet challenge and the top-5 error

ILSVRC (the ImageNet Large Scale Visual Recognition Challenge, 2010–2017) asked for one label out of
**1,000 classes**, with about **1.2 million training images** and 100k test images. An entry
could return five guesses per image; an image counts as correct when the true label is among
them. The **top-5 error** is the fraction of images where it is not. Five guesses forgive the
label noise of a data set where one image may show a dog, a sofa and a cushion at once.

Until 2011 the best entries were hand-designed pipelines (SIFT descriptors encoded as Fisher
vectors, then linear classifiers). In 2012 a convolutional network trained end to end cut the
error by about ten points. This notebook defines the metric, measures it, and shows the jump.
''' + SETUP + r'''
#%% md
## The numbers the lecture quotes

Top-5 errors as the papers report them (test set unless noted): the 2012 runner-up with SIFT +
Fisher vectors 26.2%, AlexNet 16.4% (five CNNs; 15.3% with seven), ZF 2013 14.8%, VGG 2014 7.3%,
GoogLeNet 2014 6.67%, ResNet 2015 3.57%.
#%%
from minidl.visualize import bar_chart
labels = ["SIFT+FV", "AlexNet", "ZF", "VGG", "GoogLeNet", "ResNet"]
top5 = [26.2, 16.4, 14.8, 7.3, 6.67, 3.57]
show(bar_chart(labels, top5, title="ILSVRC top-5 error (%), 2012-2015", fmt="{:.1f}"))
print(f"2012: AlexNet removed {26.2 - 16.4:.1f} points, {100 * (26.2 - 16.4) / 26.2:.0f}% of the runner-up's errors")
#%% md
## Exercise: write the top-k error

`scores` is an `(N, classes)` array, `targets` the `(N,)` true classes. Return the fraction of
rows whose target is **not** among the `k` highest scores. Replace the body below, then run the
check cell.
#%%
def my_topk_error(scores, targets, k=5):
    # EXERCISE: your code here (hint: np.argsort along axis 1)
    return None
#%%
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
#%% md
The solution lives in `solutions/topk.py`; importing it lets the notebook run on.
#%%
from solutions.topk import topk_error as my_topk_error
assert check_topk(my_topk_error)
#%% md
## What chance gives

A classifier that guesses at random has top-1 error 1 - 1/C and top-5 error 1 - 5/C. With 1,000
classes that is 99.9% and 99.5%; on our 10-class digits top-5 chance is already 50%, which is why
on small label sets the top-1 error is the one to watch. Measured on random scores:
#%%
n = pick(2000, 20000)
for C in (1000, 10):
    s, t = rng.standard_normal((n, C)), rng.integers(0, C, n)
    e1, e5 = my_topk_error(s, t, 1), my_topk_error(s, t, 5)
    print(f"{C:5d} classes: random top-1 error {100 * e1:.1f}% (theory {100 * (1 - 1 / C):.1f}%), "
          f"top-5 {100 * e5:.1f}% (theory {100 * (1 - 5 / C):.1f}%)")
#%% md
## Fixed features vs learned features, on a small scale

The pre-2012 recipe fixed the features and learned only a linear classifier on top. We can mimic
the contrast on handwritten digits: a linear classifier on the raw pixels against a small ConvNet
that learns its own features, both trained for the same few epochs.
#%%
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
#%% md
On ImageNet the gap was 26.2% → 16.4% top-5. Here the learned features also win, and the top-5
errors of both are small because ten classes leave little room for ambiguity.
'''

# ================================================================================================
NOTEBOOKS["02_autograd_and_gradient_checking.ipynb"] = r'''
#%% md
# 02 · Autograd from scratch, and checking gradients

Training needs the derivative of the loss with respect to every weight. Reverse-mode automatic
differentiation gets all of them in one backward sweep: every operation records its inputs while
the forward pass runs, and afterwards the graph is walked in reverse, each node multiplying the
incoming gradient by its local derivative (the chain rule) and adding it to its inputs' gradients.

We first build that machine for scalars in a few lines, then use minidl's version (the same idea
on whole arrays), and finally check a hand-written backward numerically.
''' + SETUP + r'''
#%%
import math

class Value:
    """A scalar that remembers how it was computed."""
    def __init__(self, data, parents=(), local_grads=()):
        self.data, self.grad = data, 0.0
        self.parents, self.local_grads = parents, local_grads   # d(self)/d(parent) for each parent

    def __add__(self, o):
        o = o if isinstance(o, Value) else Value(o)
        return Value(self.data + o.data, (self, o), (1.0, 1.0))

    def __mul__(self, o):
        o = o if isinstance(o, Value) else Value(o)
        return Value(self.data * o.data, (self, o), (o.data, self.data))

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1 - t * t,))

    def relu(self):
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def backward(self):
        order, seen = [], set()
        def visit(v):                      # topological order: parents before children
            if id(v) not in seen:
                seen.add(id(v))
                for p in v.parents:
                    visit(p)
                order.append(v)
        visit(self)
        self.grad = 1.0
        for v in reversed(order):          # children before parents: every grad is complete when used
            for p, g in zip(v.parents, v.local_grads):
                p.grad += g * v.grad       # += : a value used twice collects both contributions

# a one-neuron example: y = relu(w1*x1 + w2*x2 + b) * tanh(w1)
x1, x2, w1, w2, b = Value(2.0), Value(-1.0), Value(0.5), Value(-0.3), Value(0.1)
y = (w1 * x1 + w2 * x2 + b).relu() * w1.tanh()
y.backward()
print("from scratch:", [round(v.grad, 6) for v in (w1, w2, b)])

t = {k: md.tensor([v], requires_grad=True, dtype="float64") for k, v in dict(x1=2.0, x2=-1.0, w1=0.5, w2=-0.3, b=0.1).items()}
ym = F.relu(t["w1"] * t["x1"] + t["w2"] * t["x2"] + t["b"]) * F.tanh(t["w1"])
ym.sum().backward()
print("minidl:      ", [round(float(t[k].grad[0]), 6) for k in ("w1", "w2", "b")])
#%% md
## Gradient checking

A backward pass is easy to get subtly wrong. The check: perturb one input element by ±eps and
compare the change of the output, (f(x+eps) − f(x−eps)) / 2eps, with the analytic gradient.
The error of this central difference shrinks like eps², until round-off takes over (the
difference of two nearly equal numbers). That is why checks run in **float64**: measured below
for f = tanh at x = 0.5.
#%%
from minidl.visualize import line_plot
x0, exact = 0.5, 1 - np.tanh(0.5) ** 2
eps_list = 10.0 ** -np.arange(1, 12)
err = {}
for dt in (np.float32, np.float64):
    x = dt(x0)
    err[np.dtype(dt).name] = [np.log10(abs(float((np.tanh(x + dt(e)) - np.tanh(x - dt(e))) / (2 * dt(e))) - exact) + 1e-17)
                              for e in eps_list]
best = {k: eps_list[int(np.argmin(v))] for k, v in err.items()}
print("best eps:", best)
show(line_plot({k: (v, {"x": np.log10(eps_list)}) for k, v in err.items()},
               title="log10 error of the central difference", xlabel="log10 eps"))
#%% md
## Exercise: ReLU as a minidl Function

A minidl `Function` gets raw arrays in `forward` (save what backward needs on `self`) and the
gradient of the output in `backward`; it returns the gradient of the input. Finish `backward`.
`check_layer` compares your forward with `F.relu` and your backward with central differences.
#%%
class MyReLU(md.Function):
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        # EXERCISE: the gradient flows only where x was positive
        return gy
#%%
result = check_layer(MyReLU, reference=F.relu, shapes=[(4, 5), (2, 3, 4, 4)])
#%% md
The report names the input whose gradient is wrong, how many elements, the worst one and a
hint. The solution is in `solutions/relu.py`:
#%%
from solutions.relu import ReLU as MyReLU
assert check_layer(MyReLU, reference=F.relu, shapes=[(4, 5), (2, 3, 4, 4)])
#%% md
## ReLU vs tanh gradients (slide 13)

tanh's derivative 1 − tanh² is below 0.1 once |x| > 1.8: saturated units pass almost no
gradient, and in a stack the factors multiply. ReLU's derivative is exactly 1 wherever the unit
is active. Measured: the gradient that reaches each layer of a 10-layer network at initialisation.
#%%
def layer_grad_norms(act, depth=10, width=64, n=64):
    md.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    net = nn.Sequential(*layers, nn.Linear(width, 10))
    x = md.tensor(np.random.default_rng(0).standard_normal((n, width)).astype(np.float32))
    F.cross_entropy(net(x), np.arange(n) % 10).backward()
    return [float(np.linalg.norm(net[2 * i].weight.grad)) for i in range(depth)]

g_relu, g_tanh = layer_grad_norms(nn.ReLU), layer_grad_norms(nn.Tanh)
show(line_plot({"ReLU": np.log10(g_relu), "tanh": np.log10(g_tanh)},
               title="log10 |dL/dW| per layer (1 = first)", xlabel="layer"))
print(f"first layer / last layer gradient: ReLU {g_relu[0] / g_relu[-1]:.3f}, tanh {g_tanh[0] / g_tanh[-1]:.3f}")
#%% md
With PyTorch-style initialisation (weights up to ±1/√fan_in) both shrink towards the input, and
here the **ReLU** net shrinks more (when we ran it: first/last 0.02 for ReLU, 0.16 for tanh). The
pre-activations stay small, where tanh's slope is close to 1, while every ReLU layer zeroes about
half of its units. The saturation argument needs large pre-activations. So does tanh train more
slowly? That is an experiment, not a derivation: lesson 04 runs it.
'''

# ================================================================================================
NOTEBOOKS["03_convolution_im2col.ipynb"] = r'''
#%% md
# 03 · Convolution as im2col + one matrix product

Every output unit of a convolution is a **dot product** between a filter and the window of input
under it (slide 14). Copy every window into a column of a matrix (**im2col**) and all those dot
products become one matrix product — the operation BLAS libraries and GPUs run fastest. The price
is memory: each input pixel is copied into up to k·k columns.
''' + SETUP + r'''
#%%
x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
from solutions.im2col import im2col as sol_im2col
col = sol_im2col(x, 2, 1, 0)
print("input\n", x[0, 0])
print("im2col with a 2x2 window, stride 1: one column per output position\n", col)
w = np.array([[1.0, 0.0], [0.0, -1.0]])
y = F.conv2d(md.tensor(x), md.tensor(w.reshape(1, 1, 2, 2))).numpy()
print("output (0, 1) =", y[0, 0, 0, 1], "= filter . column 1 =", w.ravel() @ col[:, 1])
#%% md
## Exercise: im2col and col2im

`my_im2col(x, k, s, p)` turns `x (N, C, H, W)` into `(C*k*k, N*oh*ow)`: row `(c, i, j)`,
column `(n, y, x)` holds `x[n, c, y*s - p + i, x*s - p + j]` (zero in the padding).
`my_col2im` is its adjoint: it adds every column entry back to the pixel it came from — where
windows overlap, contributions **sum**. The class below builds a convolution from your two
functions; `check_layer` compares it with `F.conv2d` (stride 2 with a 3x3 kernel, so windows overlap).
#%%
def my_im2col(x, k, s=1, p=0):
    N, C, H, W = x.shape
    oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    # EXERCISE: fill the columns
    return np.zeros((C * k * k, N * oh * ow), dtype=x.dtype)

def my_col2im(col, x_shape, k, s=1, p=0):
    # EXERCISE: add every column entry back to its pixel
    return np.zeros(x_shape, dtype=col.dtype)
#%%
class ConvGEMM(md.Function):
    """y = W (K, C*k*k) @ col; backward: gW = g @ col^T, gx = col2im(W^T @ g)."""
    def __init__(self, im2col, col2im, stride=1, padding=0):
        self.im2col, self.col2im, self.s, self.p = im2col, col2im, stride, padding

    def forward(self, x, w):
        N, C, H, W = x.shape
        K, _, k, _ = w.shape
        oh, ow = (H + 2 * self.p - k) // self.s + 1, (W + 2 * self.p - k) // self.s + 1
        self.col, self.w, self.x_shape = self.im2col(x, k, self.s, self.p), w, x.shape
        return (w.reshape(K, -1) @ self.col).reshape(K, N, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        K, k = self.w.shape[0], self.w.shape[2]
        g = gy.transpose(1, 0, 2, 3).reshape(K, -1)
        gw = (g @ self.col.T).reshape(self.w.shape)
        gx = self.col2im(self.w.reshape(K, -1).T @ g, self.x_shape, k, self.s, self.p)
        return gx, gw

def check_conv():
    return check_layer(lambda x, w: ConvGEMM(my_im2col, my_col2im, 2, 1)(x, w),
                       reference=lambda x, w: F.conv2d(x, w, None, 2, 1),
                       shapes=[((2, 2, 7, 7), (3, 2, 3, 3))], name="ConvGEMM")
result = check_conv()
#%% md
Solution: `solutions/im2col.py`.
#%%
from solutions.im2col import im2col as my_im2col, col2im as my_col2im
assert check_conv()
#%% md
## The memory cost, layer by layer in AlexNet

For each convolution of the paper's AlexNet (227x227 input) we record the input it receives and
compute the size of its im2col matrix (per image, float32), against the size of the input itself.
#%%
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
#%% md
The first layer's matrix is about 7x its input (11·11 windows at stride 4 overlap), the 3x3 layers
about 9x. A training engine reuses these buffers between steps instead of allocating them anew.

## Speed: loops vs one GEMM

The same convolution three ways: a Python loop over output positions (each a small dot product),
the im2col + GEMM above, and `F.conv2d` (Numba im2col + BLAS).
#%%
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
r2, t2 = timed(lambda: ConvGEMM(my_im2col, my_col2im)(md.tensor(xa), md.tensor(wa)).numpy())
r3, t3 = timed(lambda: F.conv2d(md.tensor(xa), md.tensor(wa)).numpy())
assert np.allclose(r1, r2) and np.allclose(r1, r3)
print(f"loops {1e3 * t1:.1f} ms, im2col+GEMM (NumPy) {1e3 * t2:.1f} ms, F.conv2d {1e3 * t3:.1f} ms")
'''

# ================================================================================================
NOTEBOOKS["04_alexnet.ipynb"] = r'''
#%% md
# 04 · AlexNet, layer by layer

AlexNet (Krizhevsky, Sutskever, Hinton 2012) has five convolutional and three fully connected
layers, split over two GPUs. Its ingredients: ReLU non-linearities, local response normalisation
(LRN), overlapping max-pooling, dropout in the classifier, and the two "towers" (grouped
convolutions). This notebook measures what each one does.
''' + SETUP + r'''
#%%
alex = models.alexnet()              # the paper's version: groups=2 in conv2/4/5, LRN, 227x227 input
print(models.summary(alex, (3, 227, 227)))
n = alex.num_parameters()
print(f"\nparameters: {n:,} (the paper's layer table gives 60,965,224)")
fc = sum(m.num_parameters() for m in alex.classifier.modules() if isinstance(m, nn.Linear))
print(f"the three fully connected layers hold {fc:,} of them ({100 * fc / n:.0f}%)")
#%% md
## ReLU vs tanh: speed of learning

The paper's Figure 1: a four-layer ConvNet on CIFAR-10 reached 25% training error **six times
faster** with ReLUs than with tanh units (each net with its own best learning rate). The reason
given: tanh saturates — for large inputs its slope is almost 0 — while ReLU's slope is 1 for every
positive input.

We test the claim in miniature, and fairly. Two fully connected nets (6 hidden layers of 64 units)
on the same 512 digits (16x16, standardised), built from the *same* random weights (Gaussian with
std √(2/fan_in)), trained on the same batches with the same learning rate; only the non-linearity
differs. We count the SGD steps (batch 32, momentum 0.9) until the training error is at most 2%,
for three seeds and three learning rates.
#%%
from minidl.visualize import line_plot
from lessonlib import relu_vs_tanh, mlp, flat_digits, training_error_curve
lrs = (0.003, 0.01, 0.03)
speed = relu_vs_tanh(lrs=lrs, seeds=(0, 1, 2), depth=6, width=64, n=512, target=0.02)
print("steps to 2% training error (seeds 0, 1, 2); ratio = tanh steps / ReLU steps, > 1 means ReLU is faster")
for lr in lrs:
    r, t = speed[("ReLU", lr)], speed[("tanh", lr)]
    ratio = np.median([b / a for a, b in zip(r, t) if a and b])
    print(f"lr {lr:<6}  ReLU {r}  tanh {t}  median ratio {ratio:.2f}")
x16, y16 = flat_digits(512)
curves = {name: training_error_curve(mlp(act, 6, 64, seed=0), x16, y16, steps=200, lr=0.01, every=10)
          for name, act in (("ReLU", nn.ReLU), ("tanh", nn.Tanh))}
show(line_plot({k: (100 * np.array(v), {"x": 10 * np.arange(1, len(v) + 1)}) for k, v in curves.items()},
               title="training error (%), seed 0, lr 0.01", xlabel="step"))
#%% md
**What we measured** (fast and full mode run the same experiment): tanh reached 2% in *fewer*
steps than ReLU at every learning rate — a ratio of about 0.3 to 0.7, not 6. We also tried, outside
the notebook, 4 and 8 hidden layers, initial scales from 0.5 to 3 times √(1/fan_in), and each
activation at its own best learning rate (the paper's protocol), with standardised and with raw
0..1 pixels: tanh was faster in every setting, by 1.2x to 2.5x, and in a few of them only the tanh
net got there at all. So the 6x does **not** reproduce at this scale.

That does not make the paper wrong; it shows the claim depends on the setting. Its net was a
convolutional one trained on CIFAR-10 photos for many epochs — a harder problem, where units can
be pushed into tanh's flat tails. We did not find out which of those differences matters. On our
small problem, with standardised inputs and an initial scale tied to the fan-in, tanh stays in its
steep middle part. ReLU kept winning for other reasons: it is cheaper to compute, its slope does
not vanish for large inputs, and with the initialisation used above (std √(2/fan_in), He et al.
2015) a deep ReLU net keeps the scale of its signal from layer to layer — part of what made 20- to
150-layer nets trainable (lesson 08).
#%% md
## Local response normalisation

`b[c] = a[c] / (k + α Σ a[c']²)^β`, the sum running over `n` neighbouring channels (n=5, k=2,
α=1e-4, β=0.75). A unit with strongly active neighbours is damped: "lateral inhibition". Checked
by hand at one position:
#%%
a = np.random.default_rng(0).random((1, 8, 2, 2)).astype(np.float64) * 20
b = F.local_response_norm(md.tensor(a), 5, 1e-4, 0.75, 2.0).numpy()
c = 4
by_hand = a[0, c, 0, 0] / (2.0 + 1e-4 * (a[0, c - 2:c + 3, 0, 0] ** 2).sum()) ** 0.75
print(f"minidl {b[0, c, 0, 0]:.6f}, by hand {by_hand:.6f}")
#%% md
### Exercise: LRN backward

Write the backward of LRN. With d = k + α·(window sum of a²) and b = a·d^−β, the output b[c]
depends on a[c] directly and, through d[c], on every a[c'] in its window. Check against
`F.local_response_norm` (which is also used as the forward reference).
#%%
from solutions.lrn import window_sum      # the forward helper is given

class MyLRN(md.Function):
    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a):
        self.a = a
        self.d = self.k + self.alpha * window_sum(a * a, self.size)
        self.b = a * self.d ** -self.beta
        return self.b

    def backward(self, gb):
        # EXERCISE: add the term that flows through the neighbours' normalisers
        return gb * self.d ** -self.beta

def check_lrn(cls):     # a large alpha makes the cross-channel term matter
    return check_layer(lambda a: cls(5, 0.1, 0.75, 2.0)(a), reference=lambda a: F.local_response_norm(a, 5, 0.1, 0.75, 2.0),
                       shapes=[(2, 7, 3, 3)], name=cls.__name__)
result = check_lrn(MyLRN)
#%%
from solutions.lrn import LRN as MyLRN
assert check_lrn(MyLRN)
#%% md
## Overlapping pooling

AlexNet pools 3x3 windows with stride 2 (they overlap) instead of 2x2 with stride 2; the paper
reports 0.4% lower top-1 error. Output sizes are the same, but each input value takes part in up
to four windows:
#%%
x = md.tensor(np.random.default_rng(0).random((1, 1, 55, 55)))
for k, s in ((2, 2), (3, 2)):
    y = F.max_pool2d(x, k, s)
    counts = np.zeros((55, 55), int)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            counts[i * s:i * s + k, j * s:j * s + k] += 1
    print(f"{k}x{k} stride {s}: 55 -> {y.shape[2]}, an input value is in up to {counts.max()} windows")
#%% md
## Dropout

In training each unit of the fully connected layers is zeroed with probability 0.5 — a different
thinned network every step, so units cannot rely on each other. minidl uses *inverted* dropout:
survivors are scaled by 1/(1−p) in training, so nothing changes at test time.
#%%
h = md.tensor(np.ones((1000, 100), dtype=np.float32))
y = F.dropout(h, 0.5, training=True).numpy()
print(f"training: {100 * (y == 0).mean():.1f}% zeroed, mean {y.mean():.3f} (input mean 1); "
      f"eval: unchanged = {np.array_equal(F.dropout(h, 0.5, training=False).numpy(), h.numpy())}")
#%% md
## The two towers: grouped convolutions

AlexNet's conv2, conv4 and conv5 connect each GPU's half of the channels only to the same half:
a convolution with `groups=2`. Each filter sees half the input channels, so the layer has half
the weights.
#%%
for g in (1, 2):
    conv = nn.Conv2d(96, 256, 5, padding=2, groups=g)
    print(f"conv2 with groups={g}: weight {conv.weight.shape}, {conv.num_parameters():,} parameters")
print("the paper model's conv2 weight:", alex.features.conv2.weight.shape, "(each filter sees 48 of the 96 channels)")
tv = models.alexnet(variant="torchvision")
print(f"torchvision's single-tower AlexNet (64/192/384/256/256 filters, no LRN): {tv.num_parameters():,} parameters")
'''

# ================================================================================================
NOTEBOOKS["05_zfnet_visualising.ipynb"] = r'''
#%% md
# 05 · ZF: looking inside the network

Zeiler and Fergus (2013) argued that networks were designed by trial and error, and visualised
what the units respond to. Their **deconvnet** runs the layers in reverse: unpool with the
switches recorded by max-pooling, rectify, and filter with the transposed weights, down to the
pixels. Looking at AlexNet's first layers they changed conv1 from 11x11 stride 4 to **7x7
stride 2**: fewer dead filters, more distinct ones, less aliasing in layer 2.

Here: two small nets that differ only in their first layer are trained side by side; we compare
their filters, then project units back to pixels and collect the top-9 patches of a unit.
''' + SETUP + r'''
#%%
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
#%% md
## Layer-1 filters

Each tile is one filter, stretched to the full grey range on its own. A filter that is still
close to its random start looks like noise; trained ones show strokes and edges.
#%%
for name, net in nets.items():
    print(name)
    show(filter_grid(net[0].weight, ncols=8, scale=pick(4, 6)))
#%% md
Two numbers for the slide's claims. A filter is **dead** when its unit is zero (after the ReLU)
on every held-out image; **distinctiveness** is 1 minus the mean |cosine similarity| between
pairs of filters (1 = all different directions). Random vectors of 121 numbers are closer to
orthogonal than random vectors of 49, so the 11x11 filters score higher before any training:
compare each net with its own starting point (`zf_style` is seeded, so calling it again rebuilds
the initial weights).
#%%
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
#%% md
**What we measured** (fast mode, seeds 0–2, outside the notebook): dead filters 0–1 of 16 in
both nets, and distinctiveness falls by about the same amount in both (0.02–0.05) as the filters
pick up shared strokes. So the slide's "fewer dead, more distinctive filters" is **not shown** at
this scale: the paper saw it in 96 filters trained for days on ImageNet photos. What does show,
in every seed, is the held-out error: about 17–45% with 7x7 stride 2 against 56–71% with 11x11
stride 4. On 32x32 digits the coarse stride leaves a 7x7 map after conv1 (16x16 with stride 2),
and whatever falls between the samples is lost — the aliasing ZF pointed to in AlexNet's layer 2.
Full mode (no MINIDL_FAST) trains longer on all digits.

## Feature maps and the deconvnet

The feature maps of layer 2 (after its ReLU) for one digit, then the deconvnet projection of the
strongest unit of layer 1 and of layer 2 back to pixels (grey = 0, light = positive).
#%%
net = nets["7x7 stride 2"]
img = xva[0]
show(feature_grid(feature_maps(net, img, 4), ncols=8, scale=4))
dn = Deconvnet(net[:6])
for layer in (1, 4):
    r = dn.project(img, layer)
    print(r)
    show(r.image(scale=4))
#%% md
### Top-9 patches of a layer-2 unit

Over the held-out set, the nine images where one channel of layer 2 responds most, each cropped
to the unit's receptive field — and next to them the deconvnet projections of the same units.
#%%
field = receptive_field(net[:6])[4]
print(field)
r = dn.project(img, 4)
tp = top_patches(net[:6], xva, layer=4, channel=r.channel, k=9)
print("scores:", np.round(tp.scores, 2))
show(tp.grid(scale=3), tp.deconv_grid(scale=3))
#%% md
## Exercise: max-pooling with switches

The deconvnet's unpooling is the backward pass of max-pooling: the gradient goes to the element
that was the maximum (the *switch*). Finish `backward` of this 3x3 stride-2 max-pool, which
records its switches as input rows and columns.
#%%
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
#%%
from solutions.maxpool import MaxPoolSwitches
assert check_layer(lambda x: MaxPoolSwitches(3, 2)(x), reference=lambda x: F.max_pool2d(x, 3, 2), shapes=[(2, 3, 7, 7)])
'''

# ================================================================================================
NOTEBOOKS["06_googlenet.ipynb"] = r'''
#%% md
# 06 · GoogLeNet: Network in Network, 1x1 reductions, Inception

GoogLeNet (Szegedy et al. 2014) is 22 layers deep yet has far fewer parameters than AlexNet. Its
ideas: 1x1 convolutions from Network in Network, used to **reduce channels** before the expensive
3x3 and 5x5 filters; the **Inception module** running 1x1, 3x3, 5x5 and a max-pool path in
parallel; two **auxiliary classifiers** during training; and **no fully connected layers** except
the last (global average pooling instead).
''' + SETUP + r'''
#%% md
## "12x fewer parameters than AlexNet"
#%%
goog = models.googlenet(aux_logits=False)        # the paper's net: conv biases, true 5x5, no BN
goog_aux = models.googlenet(aux_logits=True)
alex = models.alexnet()
pa, pg = alex.num_parameters(), goog.num_parameters()
print(f"AlexNet (paper) {pa:,}   GoogLeNet (paper) {pg:,}   with both aux classifiers {goog_aux.num_parameters():,}")
print(f"ratio {pa / pg:.2f}x (the slide, quoting the paper: 12x)")
print(f"AlexNet's fc6 alone: {alex.classifier.fc6.num_parameters():,}; GoogLeNet's only FC layer: {goog.fc.num_parameters():,}")
#%% md
Counting every weight and bias of the two layer tables gives about **8.7x**, not 12x. The paper
compares against its own AlexNet numbers; the gap is mostly AlexNet's 9216x4096 fc6, which
GoogLeNet replaces by global average pooling.

## Network in Network: a 1x1 convolution is a per-pixel fully connected layer
#%%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 16, 5, 5))
conv = nn.Conv2d(16, 4, 1)
y_conv = F.conv2d(md.tensor(x), md.tensor(conv.weight.numpy().astype(np.float64)), md.tensor(conv.bias.numpy().astype(np.float64))).numpy()
pixels = x.transpose(0, 2, 3, 1).reshape(-1, 16)                     # every pixel is a 16-vector
y_fc = (pixels @ conv.weight.numpy().reshape(4, 16).T.astype(np.float64) + conv.bias.numpy()).reshape(2, 5, 5, 4).transpose(0, 3, 1, 2)
print("1x1 conv == the same linear layer at every pixel:", np.allclose(y_conv, y_fc))
#%% md
## What the 1x1 reductions save (slides 36–37)

Inception 3a receives 192 channels at 28x28. We count multiply-adds with `models.summary` for the
module as built (1x1 reductions to 96 and 16 channels before the 3x3 and 5x5) and for a naive
module with the same output widths but no reductions.
#%%
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
#%% md
The naive module also outputs 64 + 128 + 32 + 192 = 416 channels (the pool path passes all 192 through),
so the next layer would grow too; the pool projection keeps the width at 256.

## The parallel pooling path

A 3x3 stride-1 max-pool barely changes when its input moves by one pixel: part of the local
shift invariance the slide mentions. Measured on random feature maps shifted by one column:
#%%
a = rng.random((1, 8, 16, 16))
shifted = np.roll(a, 1, axis=3)
pool = lambda z: F.max_pool2d(md.tensor(z), 3, 1, 1).numpy()
def change(p, q):
    return np.abs(p[..., 2:-2] - q[..., 2:-2]).mean() / np.abs(p[..., 2:-2]).mean()
print(f"relative change after a 1-pixel shift: raw {change(a, shifted):.2f}, after 3x3 max-pool {change(pool(a), pool(shifted)):.2f}")
#%% md
## Auxiliary classifiers

GoogLeNet adds two small classifiers on intermediate layers during training (loss weight 0.3) so
that gradient reaches the lower layers directly. Measured on a deep plain net: the gradient at
the first layer with the main loss only, and with an auxiliary head after layer 3.
#%%
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
#%% md
## Exercise: an Inception module

Complete the module: four branches on the same input, concatenated along channels. Sizes are
tiny so that the check is quick; it gradient-checks the input and every parameter.
#%%
from solutions.inception import ConvReLU

class MyInception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        self.branch1 = ConvReLU(cin, c1, 1)
        # EXERCISE: branch2 (1x1 reduce -> 3x3), branch3 (1x1 reduce -> 5x5), branch4 (3x3/1 max-pool -> 1x1)
    def forward(self, x):
        return self.branch1(x)   # EXERCISE: concatenate all four branches

def check_inception(cls):
    md.manual_seed(0)
    m = cls(3, 2, 2, 2, 1, 2, 1)
    out = m(md.tensor(np.zeros((1, 3, 4, 4), dtype=np.float32)))
    ok_shape = out.shape == (1, 2 + 2 + 2 + 1, 4, 4)
    print("output shape", out.shape, "ok" if ok_shape else "WRONG: expected (1, 7, 4, 4)")
    ok = bool(check_layer(m, shapes=[(1, 3, 4, 4)], name=cls.__name__)) and ok_shape
    print("verdict:", "PASS" if ok else "FAIL")
    return ok

check_inception(MyInception)
#%%
from solutions.inception import Inception as MyInception
assert check_inception(MyInception)
'''

# ================================================================================================
NOTEBOOKS["07_vgg_receptive_fields.ipynb"] = r'''
#%% md
# 07 · VGG: stacks of 3x3 convolutions

VGG (Simonyan & Zisserman 2014) uses only 3x3 convolutions with stride 1 and padding 1, several in
a row between 2x2 max-pools. Two stacked 3x3 layers see a 5x5 window of the input, three see 7x7
— the same as one large filter, with fewer weights and a non-linearity after every layer.
''' + SETUP + r'''
#%%
from minidl.visualize import receptive_field
for n in (1, 2, 3, 4):
    stack = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(n)]
    print(f"{n} stacked 3x3 convs: receptive field {receptive_field(stack)[-1].size}x{receptive_field(stack)[-1].size}")
#%% md
## Measured, not just computed

Back-propagate from the centre unit of the last layer: the input pixels with a non-zero gradient
are exactly those the unit can see.
#%%
for n in (1, 2, 3):
    md.manual_seed(0)
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(n)])
    x = md.tensor(np.zeros((1, 1, 15, 15)), requires_grad=True, dtype="float32")
    y = stack(x)
    y[0, 0, 7, 7].backward()
    rows, cols = np.nonzero(x.grad[0, 0])
    print(f"{n} layers: gradient reaches rows {rows.min()}..{rows.max()}, columns {cols.min()}..{cols.max()} "
          f"-> {rows.max() - rows.min() + 1}x{cols.max() - cols.min() + 1}")
#%% md
## Weights: a stack against one big filter

With C channels in and out (no biases): n layers of 3x3 have 9nC² weights, one (2n+1)x(2n+1)
layer has (2n+1)²C².
#%%
C = 64
print(f"{'field':>6} {'3x3 stack':>12} {'one filter':>12} {'saving':>7} {'ReLUs':>6}")
for n in (2, 3):
    stack = sum(nn.Conv2d(C, C, 3, padding=1, bias=False).num_parameters() for _ in range(n))
    big = nn.Conv2d(C, C, 2 * n + 1, padding=n, bias=False).num_parameters()
    print(f"{2 * n + 1:>4}x{2 * n + 1:<1} {stack:>12,} {big:>12,} {100 * (1 - stack / big):>6.0f}% {n:>3} vs 1")
#%% md
The paper's numbers: 27C² vs 49C² for 7x7, i.e. 45% fewer weights, with three non-linearities
instead of one.

## VGG16 in numbers
#%%
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
#%% md
The receptive field column of `models.summary` shows the field growing by 2 per 3x3 layer and
doubling its step at every pool:
#%%
small = models.vgg11() if not FAST else None
feats = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
for f in receptive_field(feats):
    print(f)
#%% md
## Exercise: a VGG block

Write `my_vgg_block(cin, cout, n)`: n 3x3 convolutions (stride 1, padding 1) each followed by a
ReLU, then a 2x2 max-pool. The check: output shape, receptive field, and a gradient check.
#%%
def my_vgg_block(cin, cout, n):
    # EXERCISE
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())

def check_block(fn):
    md.manual_seed(0)
    block = fn(2, 3, 2)
    out = block(md.tensor(np.zeros((1, 2, 6, 6), dtype=np.float32)))
    rf = receptive_field(block)[-1].size
    ok = out.shape == (1, 3, 3, 3) and rf == 6
    print(f"output {out.shape} (want (1, 3, 3, 3)), receptive field {rf} (want 6: 5 from two 3x3, +1 from the pool)")
    return check_layer(block, shapes=[(1, 2, 4, 4)], name="vgg block") and ok

check_block(my_vgg_block)
#%%
from solutions.vgg_block import vgg_block as my_vgg_block
assert check_block(my_vgg_block)
'''

# ================================================================================================
NOTEBOOKS["08_resnet_degradation.ipynb"] = r'''
#%% md
# 08 · ResNet: deeper plain nets train worse; shortcuts fix it

He et al. (2015) observed that a plain 34-layer network has *higher training error* than an
18-layer one — not overfitting but an optimisation difficulty (the "degradation" problem). Their
fix: let a block learn a residual F(x) and output F(x) + x. An identity is then easy (F = 0), and
with shortcuts the deeper net wins. ResNet-152 reached 3.57% top-5 in ILSVRC 2015.

We reproduce the experiment in miniature: plain and residual nets of two depths, same data, same
schedule. First, the building block is an exercise.
''' + SETUP + r'''
#%% md
## Exercise: the basic residual block

Two 3x3 convolutions (no bias) each followed by batch norm, a ReLU between them; the input added
to the result before the final ReLU. With `shortcut=False` the same block without the addition
(the plain net's block).
#%%
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
#%%
from solutions.residual import ResidualBlock as MyResidualBlock
assert check_block(MyResidualBlock)
#%% md
## Plain vs residual, shallow vs deep

**Fast mode** uses fully connected twins of the CIFAR nets (`lessonlib.DenseNet`): a Linear +
BatchNorm + ReLU stem, blocks like the one above with `Linear` in place of `Conv2d`, all 32 units
wide, and a linear classifier. Shallow = 4 weight layers, deep = 20; each plain or residual. All
four train on the same 512 digits (16x16, flattened) for 300 SGD steps (batch 32, lr 0.01,
momentum 0.9), for seeds 0, 1 and 2; within a seed every net gets the same random stream and the
same batches. We record the error on the whole training set every 20 steps.

**Full mode** trains the library's CIFAR-style conv nets instead (`models.plain_cifar` /
`models.resnet_cifar`, 20 vs 56 layers) on all 32x32 digits for 12 epochs, one seed.
#%%
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
#%% md
Two panels, as in the paper's Figure 4: plain nets on the left, residual nets on the right; thin =
shallow, bold = deep; the mean over seeds.
#%%
from minidl.visualize.plots import COLORS
shallow, deep = depths
def panel(kind):
    series = {f"{kind}-{d}": (100 * np.mean(runs[f"{kind}-{d}"], axis=0),
                              {"color": COLORS[i], "width": 1 + 2 * i, "x": every * np.arange(1, len(runs[f"{kind}-{d}"][0]) + 1)})
              for i, d in enumerate(depths)}
    return line_plot(series, title=f"{kind}: training error (%)", xlabel=xlabel, size=(400, 300), ylim=(0, 100 * max(max(max(c) for c in cs) for cs in runs.values())))
show(panel("plain"), panel("residual"))
#%%
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
#%% md
**What we measured** in fast mode: the 20-layer plain net ends at about 17–21% training error,
the 4-layer one at about 0.1% — the deeper plain net is much *worse*, in every seed, and it is
the training error, so this is not overfitting. With shortcuts, the same 20 layers reach about
0.2–1.1%, within about one point of the 4-layer nets. So the degradation is gone — the deeper
residual net trains about as well as the shallow one — but at this budget it is not *better*:
300 steps on a few hundred easy digits leave nothing for 16 more layers to win. In the paper the
34-layer ResNet beats the 18-layer one after about 60 epochs of ImageNet (slides 49–51); full
mode's 20- vs 56-layer conv nets are the closer, slower version of that experiment.
'''


def cells_of(text):
    cells, kind, buf = [], None, []
    for line in text.strip("\n").splitlines():
        m = re.match(r"^#%%( md)?\s*$", line)
        if m:
            if kind is not None:
                cells.append((kind, "\n".join(buf).strip("\n")))
            kind, buf = ("markdown" if m.group(1) else "code"), []
        else:
            buf.append(line)
    if kind is not None:
        cells.append((kind, "\n".join(buf).strip("\n")))
    return cells


def build(name, text):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for kind, src in cells_of(text):
        cell = nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        cell.id = f"{name[:2]}-{len(nb.cells):02d}"   # stable ids: regenerating gives the same file
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main():
    for name, text in NOTEBOOKS.items():
        nb = build(name, text)
        with open(os.path.join(HERE, name), "w") as f:
            nbformat.write(nb, f)
        print("wrote", name, len(nb.cells), "cells")


if __name__ == "__main__":
    main()
