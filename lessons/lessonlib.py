"""Helpers shared by the lesson notebooks: fast mode, a small data set, a short training loop, display.

MINIDL_FAST=1 (set by the test suite) shrinks every experiment so that a notebook runs in seconds
on two CPU cores; without it the notebooks run their fuller versions.
"""
import os
import time

import numpy as np

import minidl as md
from minidl import functional as F, optim

FAST = os.environ.get("MINIDL_FAST", "0") not in ("", "0", "false", "False")


def pick(fast, full):
    """``fast`` in fast mode, else ``full``."""
    return fast if FAST else full


def digits(n_train=None, n_val=None, size=32, seed=0):
    """(x_train, y_train, x_val, y_val) from minidl's embedded digits, float32 (N, 1, size, size)."""
    from minidl.data import Digits
    tr, va = Digits(train=True, size=size), Digits(train=False, size=size)
    rng = np.random.default_rng(seed)
    i = rng.permutation(len(tr))[:n_train] if n_train else np.arange(len(tr))
    j = rng.permutation(len(va))[:n_val] if n_val else np.arange(len(va))
    return tr.data[i], tr.targets[i], va.data[j], va.targets[j]


def error_of(model, x, y, batch_size=256):
    """Top-1 error of ``model`` (eval mode, restored after) on arrays x, y."""
    was = model.training
    model.eval()
    wrong = 0
    with md.no_grad():
        for s in range(0, len(x), batch_size):
            out = model(md.tensor(x[s:s + batch_size]))
            out = out[0] if isinstance(out, tuple) else out
            wrong += int((out.numpy().argmax(axis=1) != y[s:s + batch_size]).sum())
    model.train(was)
    return wrong / len(x)


def train(model, x, y, epochs=1, lr=0.05, batch_size=32, momentum=0.9, weight_decay=0.0, x_val=None, y_val=None,
          seed=0, loss_fn=None):
    """Plain SGD on arrays; returns a history dict: per-step 'loss', per-epoch 'train_error', 'val_error', 'seconds'.

    loss_fn(output, y) -> scalar Tensor (default: cross-entropy of the output, or of its first element).
    """
    opt = optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    hist = {"loss": [], "train_error": [], "val_error": [], "seconds": 0.0}
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        for s in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            out = model(md.tensor(x[idx]))
            if loss_fn is not None:
                loss = loss_fn(out, y[idx])
            else:
                loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y[idx])
            model.zero_grad()
            loss.backward()
            opt.step()
            hist["loss"].append(loss.item())
        hist["train_error"].append(error_of(model, x, y))
        if x_val is not None:
            hist["val_error"].append(error_of(model, x_val, y_val))
    hist["seconds"] = time.perf_counter() - t0
    return hist


def smooth(values, k=5):
    """Running mean over k steps (for readable per-step loss curves)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def show(*images):
    """Display PIL images inline in Jupyter (and do nothing harmful outside it)."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return
    for im in images:
        display(im)


# ------------------------------------------------------------------------------------------------
# Small fully connected experiments (lessons 04 and 08): fast enough to repeat over seeds on 2 CPU cores.

def flat_digits(n=None, size=16, seed=0):
    """(x, y): n training digits flattened to (n, size*size) and standardised (mean 0, std 1 over all pixels)."""
    x, y, _, _ = digits(n, 1, size=size, seed=seed)
    x = x.reshape(len(x), -1)
    return ((x - x.mean()) / x.std()).astype(np.float32), y


class BatchNorm1d(md.nn.Module):
    """Batch norm over the batch axis of (N, C) features (F.batch_norm, as BatchNorm2d does for maps)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = md.nn.Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = md.nn.Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


def mlp(act, depth, width, in_features=256, classes=10, gain=2 ** 0.5, seed=0):
    """depth hidden layers Linear -> act, then a linear classifier; weights N(0, gain^2 / fan_in), biases 0.

    The same initialisation for every activation: only ``act`` differs between two nets of one seed.
    """
    rng = np.random.default_rng(seed)
    layers, d = [], in_features
    for out in [width] * depth + [classes]:
        lin = md.nn.Linear(d, out)
        lin.weight.data[...] = (rng.standard_normal((out, d)) * gain / np.sqrt(d)).astype(np.float32)
        lin.bias.data[...] = 0
        layers += [lin, act()] if out != classes or len(layers) < 2 * depth else [lin]
        d = out
    return md.nn.Sequential(*layers)


def sgd_steps(model, x, y, lr, max_steps, batch_size=32, momentum=0.9, seed=0):
    """Take up to ``max_steps`` SGD steps on shuffled mini-batches of (x, y); yields the step count."""
    opt = optim.SGD(model.parameters(), lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    step = 0
    while step < max_steps:
        order = rng.permutation(len(x))
        for s in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            loss = F.cross_entropy(model(md.tensor(x[idx])), y[idx])
            model.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            yield step
            if step >= max_steps:
                return


def steps_to_error(model, x, y, target, lr, max_steps=800, batch_size=32, momentum=0.9, every=10, seed=0):
    """SGD steps until the training error on (x, y) is <= target (checked every ``every`` steps); None if never."""
    for step in sgd_steps(model, x, y, lr, max_steps, batch_size, momentum, seed):
        if step % every == 0 and error_of(model, x, y) <= target:
            return step
    return None


def relu_vs_tanh(lrs=(0.003, 0.01, 0.03), seeds=(0, 1, 2), depth=6, width=64, n=512, target=0.02, max_steps=800):
    """Steps each activation needs to reach ``target`` training error: {(act, lr): [steps per seed]}.

    Same data, architecture, initialisation (per seed) and learning rate for both; only the non-linearity differs.
    """
    x, y = flat_digits(n)
    out = {}
    for lr in lrs:
        for name, act in (("ReLU", md.nn.ReLU), ("tanh", md.nn.Tanh)):
            out[(name, lr)] = [steps_to_error(mlp(act, depth, width, x.shape[1], seed=s), x, y, target, lr,
                                              max_steps=max_steps, seed=s) for s in seeds]
    return out


class DenseBlock(md.nn.Module):
    """Two Linear -> BatchNorm layers with a ReLU between; with ``shortcut`` the input is added before the last ReLU.

    The fully connected twin of ResNet's basic block (and, with shortcut=False, of the plain net's block).
    """

    def __init__(self, width, shortcut=True):
        super().__init__()
        self.fc1, self.bn1 = md.nn.Linear(width, width, bias=False), BatchNorm1d(width)
        self.fc2, self.bn2 = md.nn.Linear(width, width, bias=False), BatchNorm1d(width)
        self.shortcut = shortcut

    def forward(self, x):
        out = self.bn2(self.fc2(F.relu(self.bn1(self.fc1(x)))))
        return F.relu(out + x if self.shortcut else out)


class DenseNet(md.nn.Module):
    """``layers`` weight layers: Linear+BN+ReLU stem, (layers-2)/2 DenseBlocks of constant width, a linear classifier."""

    def __init__(self, layers, shortcut, width=32, in_features=256, classes=10):
        super().__init__()
        if layers < 4 or layers % 2:
            raise ValueError(f"DenseNet: layers must be even and >= 4, got {layers}")
        self.stem = md.nn.Sequential(md.nn.Linear(in_features, width, bias=False), BatchNorm1d(width), md.nn.ReLU())
        self.blocks = md.nn.Sequential(*[DenseBlock(width, shortcut) for _ in range((layers - 2) // 2)])
        self.head = md.nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def training_error_curve(model, x, y, steps, lr, batch_size=32, momentum=0.9, every=10, seed=0):
    """Train for ``steps`` SGD steps; the training error on all of (x, y) every ``every`` steps (a list)."""
    return [error_of(model, x, y) for step in sgd_steps(model, x, y, lr, steps, batch_size, momentum, seed)
            if step % every == 0]


def degradation(depths=(4, 20), seeds=(0, 1, 2), steps=300, n=1024, width=32, lr=0.01, every=10):
    """Plain and residual DenseNets of each depth on the same digits: {"plain-4": [curve per seed], ...}.

    Every net of one seed starts from the same random stream and sees the same batches.
    """
    x, y = flat_digits(n)
    out = {}
    for shortcut in (False, True):
        for d in depths:
            curves = []
            for s in seeds:
                md.manual_seed(s)
                curves.append(training_error_curve(DenseNet(d, shortcut, width, x.shape[1]), x, y, steps, lr,
                                                   every=every, seed=s))
            out[f"{'residual' if shortcut else 'plain'}-{d}"] = curves
    return out


def final_error(curve, frac=0.25):
    """Mean of the last ``frac`` of a training-error curve (steadier than its last point)."""
    return float(np.mean(curve[-max(1, int(len(curve) * frac)):]))


# ------------------------------------------------------------------------------------------------
# Lesson 01: a fixed feature pipeline against the same net trained end to end.

def edge_bank(k=5, n=8):
    """(n, 1, k, k) float32: oriented derivative-of-Gaussian filters (unit norm), n directions around the circle.

    A hand-set gradient-orientation bank, the first stage of SIFT-like descriptors.
    """
    r = np.arange(k) - (k - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    g = np.exp(-(xx ** 2 + yy ** 2) / (2 * (k / 4) ** 2))
    bank = []
    for t in np.arange(n) * 2 * np.pi / n:
        f = (np.cos(t) * xx + np.sin(t) * yy) * g
        bank.append(f / np.linalg.norm(f))
    return np.stack(bank)[:, None].astype(np.float32)


def two_stage_net(size=16, seed=0):
    """conv 5x5 (8) -> ReLU -> pool 2 -> conv 3x3 (16) -> ReLU -> pool 2 -> linear classifier, for (N, 1, size, size)."""
    md.manual_seed(seed)
    nn = md.nn
    return nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 10))


FEATURE_PIPELINES = ("fixed: hand-set edges + random stage", "fixed: random filters", "learned end to end")


def fixed_vs_learned(seeds=(0, 1, 2), n_train=1024, epochs=5, lr=0.05, batch_size=32):
    """Three versions of ``two_stage_net`` on the same 16x16 digits, init (per seed), batches and epochs.

    "fixed: hand-set edges + random stage": conv1 = ``edge_bank()``, conv2 random; both frozen, only
    the classifier learns. "fixed: random filters": both convs frozen at their random init.
    "learned end to end": every layer learns, from that same random init.
    Returns ({name: [(train_error, val_error) per seed]}, {name: model of the first seed}).
    """
    errors, models = {name: [] for name in FEATURE_PIPELINES}, {}
    for seed in seeds:
        x, y, xv, yv = digits(n_train, None, size=16, seed=seed)
        for name in FEATURE_PIPELINES:
            net = two_stage_net(16, seed)
            if name.startswith("fixed: hand-set"):
                net[0].weight.data[...] = edge_bank()
                net[0].bias.data[...] = 0
            params = list(net.parameters()) if name == "learned end to end" else list(net[-1].parameters())
            opt = optim.SGD(params, lr, momentum=0.9)    # frozen layers: their gradients are never applied
            rng = np.random.default_rng(seed)
            for _ in range(epochs):
                order = rng.permutation(len(x))
                for s in range(0, len(x) - batch_size + 1, batch_size):
                    idx = order[s:s + batch_size]
                    loss = F.cross_entropy(net(md.tensor(x[idx])), y[idx])
                    net.zero_grad()
                    loss.backward()
                    opt.step()
            errors[name].append((error_of(net, x, y), error_of(net, xv, yv)))
            models.setdefault(name, net)
    return errors, models


def layer_grad_norms(act, depth=10, width=64, n=64, seed=0):
    """|dL/dW| of each hidden Linear (first to last) of a depth-layer MLP with ``act``, at its default init."""
    md.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [md.nn.Linear(width, width), act()]
    net = md.nn.Sequential(*layers, md.nn.Linear(width, 10))
    x = md.tensor(np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32))
    F.cross_entropy(net(x), np.arange(n) % 10).backward()
    return [float(np.linalg.norm(net[2 * i].weight.grad)) for i in range(depth)]
