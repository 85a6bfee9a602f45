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
# # 02 · Autograd from scratch, and checking gradients
#
# Training needs the derivative of the loss with respect to every weight. Reverse-mode automatic
# differentiation gets all of them in one backward sweep: every operation records its inputs while
# the forward pass runs, and afterwards the graph is walked in reverse, each node multiplying the
# incoming gradient by its local derivative (the chain rule) and adding it to its inputs' gradients.
#
# We first build that machine for scalars in a few lines, then use minidl's version (the same idea
# on whole arrays), and finally check a hand-written backward numerically.

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

# %% [markdown]
# ## Gradient checking
#
# A backward pass is easy to get subtly wrong. The check: perturb one input element by ±eps and
# compare the change of the output, (f(x+eps) − f(x−eps)) / 2eps, with the analytic gradient.
# The error of this central difference shrinks like eps², until round-off takes over (the
# difference of two nearly equal numbers). That is why checks run in **float64**: measured below
# for f = tanh at x = 0.5.

# %%
import matplotlib.pyplot as plt
plt.rcParams.update({"figure.dpi": 100})          # every figure >= 400 px on its short side
x0, exact = 0.5, 1 - np.tanh(0.5) ** 2
eps_list = 10.0 ** -np.arange(1, 12)
err = {}
for dt in (np.float32, np.float64):
    x = dt(x0)
    err[np.dtype(dt).name] = [np.log10(abs(float((np.tanh(x + dt(e)) - np.tanh(x - dt(e))) / (2 * dt(e))) - exact) + 1e-17)
                              for e in eps_list]
best = {k: eps_list[int(np.argmin(v))] for k, v in err.items()}
print("best eps:", best)
fig, ax = plt.subplots(figsize=(8, 5))
for k, v in err.items():
    ax.plot(np.log10(eps_list), v, "o-", label=k)
ax.set_xlabel("log10 eps"); ax.set_ylabel("log10 |central difference - exact|")
ax.set_title("error of the central difference for tanh'(0.5)"); ax.legend(); ax.grid(alpha=0.3)
plt.show()


# %% [markdown]
# ## Exercise: ReLU as a minidl Function
#
# A minidl `Function` gets raw arrays in `forward` (save what backward needs on `self`) and the
# gradient of the output in `backward`; it returns the gradient of the input. Write both. The
# grader compares your forward with `F.relu` and your backward with `F.relu`'s and with central
# differences of your own forward, in float64.

# %%
# The stub of assignment task `relu`: replace each NotImplementedError with your code.
from minidl import Function

class ReLU(Function):
    """y = max(x, 0), x of any shape. Backward: gx = gy where x > 0, else 0."""

    def forward(self, x):
        raise NotImplementedError("relu: compute y = max(x, 0) and save the mask x > 0 for backward")

    def backward(self, gy):
        raise NotImplementedError("relu: return gy where x > 0, else 0")


# %% [markdown]
# The grader of the assignment track (`minidl assignments check`) judges the names defined above:
# PASS, FAIL with the part that is wrong and a hint, or NOT STARTED while the stub is untouched.

# %%
from minidl import assignments
assignments.check("relu", globals());

# %% [markdown]
# The worked solution (in `minidl/assignments/solutions/`) passes the same check and lets the
# notebook go on. To work outside the notebook, `minidl assignments start hw` copies the same stubs
# into `hw/` and `minidl assignments check hw` grades them with the same words.

# %%
solution = assignments.solution("relu")   # the worked solution file, graded as yours would be
assert assignments.check("relu", solution).passed
ReLU = solution.ReLU   # the notebook goes on with these

# %% [markdown]
# ## ReLU vs tanh gradients (slide 13)
#
# tanh's derivative 1 − tanh² is below 0.1 once |x| > 1.82 (printed below): saturated units pass almost no
# gradient, and in a stack the factors multiply. ReLU's derivative is exactly 1 wherever the unit
# is active. Measured: the gradient that reaches each layer of a 10-layer network at initialisation.

# %%
from lessonlib import layer_grad_norms      # 10 x (Linear 64 -> act), PyTorch-style default init, seed 0
print(f"1 - tanh(x)^2 < 0.1 for |x| > {np.arctanh(np.sqrt(0.9)):.2f}")
g_relu, g_tanh = layer_grad_norms(nn.ReLU), layer_grad_norms(nn.Tanh)
fig, ax = plt.subplots(figsize=(8, 5))
ax.semilogy(range(1, 11), g_relu, "o-", label="ReLU")
ax.semilogy(range(1, 11), g_tanh, "s-", label="tanh")
ax.set_xlabel("layer (1 = first)"); ax.set_ylabel("|dL/dW|")
ax.set_title("gradient reaching each layer at initialisation"); ax.legend(); ax.grid(alpha=0.3)
plt.show()
print(f"first layer / last layer gradient: ReLU {g_relu[0] / g_relu[-1]:.3f}, tanh {g_tanh[0] / g_tanh[-1]:.3f}")

# %% [markdown]
# With PyTorch-style initialisation (weights up to ±1/√fan_in) both shrink towards the input, and
# here the **ReLU** net shrinks more (the ratios printed above; `tests/test_lesson_claims.py` pins
# that ReLU's is the smaller). The
# pre-activations stay small, where tanh's slope is close to 1, while every ReLU layer zeroes about
# half of its units. The saturation argument needs large pre-activations. So does tanh train more
# slowly? That is an experiment, not a derivation: lesson 04 runs it.
