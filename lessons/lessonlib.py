"""Helpers shared by the lesson notebooks: fast mode, a small data set, a short training loop, display.

MINIDL_FAST=1 (set by the test suite) shrinks every experiment so that a notebook runs in seconds
on two CPU cores; without it the notebooks run their fuller versions.

MINIDL_DEVICE=cuda runs the training loops here (``train``, ``sgd_steps`` and so every experiment
of lessons 04, 05 and 08, and ``error_of``) on the GPU; each model goes back to the CPU when the
loop ends, so the cells after it (plots, deconvnet, filter grids) see NumPy arrays as usual.
"""
import contextlib
import os
import time

import numpy as np

import minidl as md
from minidl import backend, functional as F, optim

FAST = os.environ.get("MINIDL_FAST", "0") not in ("", "0", "false", "False")


def _device_from_env():
    name = os.environ.get("MINIDL_DEVICE") or "cpu"
    try:
        device = backend.check_device(name)
        if device == "cuda":
            backend.require_gpu()
    except (ValueError, RuntimeError) as e:
        raise RuntimeError(f"MINIDL_DEVICE={name!r}: {e}") from None
    return device


DEVICE = _device_from_env()
_moved = set()  # ids of the models on_device has moved and not yet brought back


@contextlib.contextmanager
def on_device(model):
    """Inside the block ``model`` is on DEVICE; after it, back on the CPU. Nested uses (an error_of
    inside a training loop) leave it where the outer one put it."""
    if DEVICE == "cpu" or id(model) in _moved:
        yield model
        return
    _moved.add(id(model))
    model.to(DEVICE)
    try:
        yield model
    finally:
        model.to("cpu")
        _moved.discard(id(model))


def batch(a):
    """A Tensor of the array ``a`` on DEVICE."""
    return md.tensor(a, device=DEVICE)


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
    with md.no_grad(), on_device(model):
        for s in range(0, len(x), batch_size):
            out = model(batch(x[s:s + batch_size]))
            out = out[0] if isinstance(out, tuple) else out
            wrong += int((out.numpy().argmax(axis=1) != y[s:s + batch_size]).sum())
    model.train(was)
    return wrong / len(x)


def train(model, x, y, epochs=1, lr=0.05, batch_size=32, momentum=0.9, weight_decay=0.0, x_val=None, y_val=None,
          seed=0, loss_fn=None):
    """Plain SGD on arrays; returns a history dict: per-step 'loss', per-epoch 'train_error', 'val_error', 'seconds'.

    loss_fn(output, y) -> scalar Tensor (default: cross-entropy of the output, or of its first element).
    """
    with on_device(model):
        opt = optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
        rng = np.random.default_rng(seed)
        hist = {"loss": [], "train_error": [], "val_error": [], "seconds": 0.0}
        t0 = time.perf_counter()
        for _ in range(epochs):
            model.train()
            order = rng.permutation(len(x))
            for s in range(0, len(x) - batch_size + 1, batch_size):
                idx = order[s:s + batch_size]
                out = model(batch(x[idx]))
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
# Training loops shared by the experiments of lessons 04, 05 and 08.

def sgd_steps(model, x, y, lr, max_steps, batch_size=32, momentum=0.9, weight_decay=0.0, seed=0, decay=()):
    """Take up to ``max_steps`` SGD steps on shuffled mini-batches of (x, y).

    Yields (step, batch indices, output, loss) after each update; the output is the one the
    update was computed from (so a training error can be scored without another forward pass).
    decay: fractions of max_steps at which the learning rate is divided by 10 (AlexNet's recipe,
    there when the validation error stopped improving), e.g. (0.6, 0.85).
    """
    with on_device(model):   # back on the CPU when the loop ends or its caller stops early
        opt = optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
        rng = np.random.default_rng(seed)
        step = 0
        while step < max_steps:
            order = rng.permutation(len(x))
            for s in range(0, len(x) - batch_size + 1, batch_size):
                opt.lr = lr * 0.1 ** sum(step >= f * max_steps for f in decay)
                idx = order[s:s + batch_size]
                out = model(batch(x[idx]))
                loss = F.cross_entropy(out, y[idx])
                model.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                yield step, idx, out, loss.item()
                if step >= max_steps:
                    return


# ------------------------------------------------------------------------------------------------
# Natural images: scikit-learn's two sample photographs (china.jpg, flower.jpg, 427x640 RGB), read
# from its package folder with Pillow (importing sklearn.datasets takes seconds), nothing downloaded.

def photos(gray=False):
    """[china, flower] as float32 arrays in [0, 1]: (427, 640, 3), or (427, 640) luminance with gray=True."""
    import importlib.util
    from PIL import Image
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("the sample photos come with scikit-learn: pip install scikit-learn")
    out = []
    for name in ("china.jpg", "flower.jpg"):
        path = next((os.path.join(f, "datasets", "images", name) for f in spec.submodule_search_locations
                     if os.path.isfile(os.path.join(f, "datasets", "images", name))), None)
        if path is None:
            raise FileNotFoundError(f"photos: scikit-learn's sample image {name} is not in {spec.submodule_search_locations}")
        im = Image.open(path).convert("L" if gray else "RGB")
        out.append(np.asarray(im, dtype=np.float32) / 255.0)
    return out


def photo_patches(n, size, seed=0, gray=True, downscale=1, min_std=0.08, rows=(0.0, 1.0), cols=(0.0, 1.0),
                  where=False):
    """n random square patches (n, C, size, size) cut from the two photos, float32 in [0, 1].

    Half come from each photo. Patches flatter than ``min_std`` (sky, blurred background) are
    skipped. ``downscale`` shrinks the photos first (more scene per patch); ``rows`` restricts the
    patch's top-left corner to a band of the photo's height (fractions), ``cols`` to a band of its
    width, so two calls can cut disjoint sets. where=True also returns a label per patch:
    2 * photo + (1 if the patch's centre is in the lower half of its photo), four classes.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    pics = photos(gray)
    if downscale != 1:
        pics = [np.asarray(Image.fromarray((255 * p).astype(np.uint8)).resize(
            (p.shape[1] // downscale, p.shape[0] // downscale), Image.BILINEAR), dtype=np.float32) / 255.0 for p in pics]
    out, labels = [], []
    while len(out) < n:
        k = len(out) % 2
        p = pics[k]
        h, w = p.shape[:2]
        lo, hi = int(rows[0] * (h - size)), max(int(rows[0] * (h - size)) + 1, int(rows[1] * (h - size)))
        clo, chi = int(cols[0] * (w - size)), max(int(cols[0] * (w - size)) + 1, int(cols[1] * (w - size)))
        i, j = rng.integers(lo, hi), rng.integers(clo, chi)
        patch = p[i:i + size, j:j + size]
        if patch.std() < min_std:
            continue
        out.append(patch[None] if gray else patch.transpose(2, 0, 1))
        labels.append(2 * k + int(i + size / 2 >= h / 2))
    x = np.stack(out).astype(np.float32)
    return (x, np.array(labels, dtype=np.int64)) if where else x


def standardise(x, ref=None):
    """(x - mean) / std with the mean and std of ``ref`` (default x itself), per channel."""
    ref = x if ref is None else ref
    m, s = ref.mean(axis=(0, 2, 3), keepdims=True), ref.std(axis=(0, 2, 3), keepdims=True)
    return ((x - m) / s).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Lesson 04: ReLU vs tanh on a small conv net (the paper's Figure 1 in miniature).

def conv_net(act, gain=1.0, depth=4, width=16, side=16, in_channels=1, classes=4, seed=0):
    """``depth`` weight layers: depth-1 convolutions (5x5 first, then 3x3, 'same' padding), each
    followed by ``act``, a 2x2 max-pool after the first three, then a linear classifier.

    Weights N(0, gain^2 / fan_in), biases 0, from ``seed``: two nets of one seed and gain start
    from the same numbers whatever their activation. The classifier always gets gain 1.
    """
    if depth < 2:
        raise ValueError(f"conv_net: depth must be >= 2 (convolutions + classifier), got {depth}")
    rng = np.random.default_rng(seed)
    layers, c, s = [], in_channels, side
    for i in range(depth - 1):
        k = 5 if i == 0 else 3
        conv = md.nn.Conv2d(c, width, k, padding=k // 2)
        conv.weight.data[...] = (rng.standard_normal(conv.weight.shape) * gain / np.sqrt(c * k * k)).astype(np.float32)
        conv.bias.data[...] = 0
        layers += [conv, act()]
        if i < 3 and s >= 2:
            layers.append(md.nn.MaxPool2d(2))
            s //= 2
        c = width
    lin = md.nn.Linear(c * s * s, classes)
    lin.weight.data[...] = (rng.standard_normal(lin.weight.shape) / np.sqrt(lin.in_features)).astype(np.float32)
    lin.bias.data[...] = 0
    return md.nn.Sequential(*layers, md.nn.Flatten(), lin)


def steps_to_running_error(model, x, y, target, lr, max_steps=300, batch_size=32, momentum=0.9, window=10, seed=0):
    """SGD steps until the training error of the last ``window`` mini-batches (each scored just before
    its update, as a training curve is usually drawn) is <= target; (steps or None, seconds per step)."""
    wrong, t0, step = [], time.perf_counter(), 0
    for step, idx, out, loss in sgd_steps(model, x, y, lr, max_steps, batch_size, momentum, seed=seed):
        wrong.append(float((out.numpy().argmax(axis=1) != y[idx]).mean()))
        if not np.isfinite(loss):
            break
        if len(wrong) >= window and np.mean(wrong[-window:]) <= target:
            return step, (time.perf_counter() - t0) / step
    return None, (time.perf_counter() - t0) / max(step, 1)


# ------------------------------------------------------------------------------------------------
# Lesson 08: plain vs residual conv nets (the CIFAR nets of He et al. in miniature).

class SmallResNet(md.nn.Module):
    """``depth`` weight layers: a 3x3 conv stem (+BN, ReLU, 2x2 max-pool), (depth-2)/2 basic blocks of
    constant ``width`` (models.resnet.BasicBlock; plain when shortcut=False), global average pool, FC.

    The CIFAR ResNets' recipe (He et al. section 4.2) at one stage and a quarter of the width, so that
    four nets train over seeds in seconds; the input (N, in_channels, S, S) is pooled to S/2 first.
    """

    def __init__(self, depth, shortcut, width=8, in_channels=1, classes=10):
        super().__init__()
        from minidl.models.resnet import BasicBlock
        from minidl.models._common import init_conv_kaiming
        if depth < 4 or depth % 2:
            raise ValueError(f"SmallResNet: depth must be even and >= 4, got {depth}")
        self.stem = md.nn.Sequential(md.nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                     md.nn.BatchNorm2d(width), md.nn.ReLU(), md.nn.MaxPool2d(2))
        self.blocks = md.nn.Sequential(*[BasicBlock(width, width, shortcut=shortcut) for _ in range((depth - 2) // 2)])
        self.pool, self.flatten = md.nn.AdaptiveAvgPool2d((1, 1)), md.nn.Flatten()
        self.fc = md.nn.Linear(width, classes)
        init_conv_kaiming(self)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


def cifar10(n_train=None, n_val=None, seed=0):
    """(x_train, y_train, x_val, y_val) from CIFAR-10 on disk (folder in $MINIDL_CIFAR10), float32
    (N, 3, 32, 32) in [0, 1]; None when the variable is unset (nothing is downloaded)."""
    root = os.environ.get("MINIDL_CIFAR10")
    if not root:
        return None
    from minidl.data import CIFAR10
    tr, va = CIFAR10(root, train=True), CIFAR10(root, train=False)
    rng = np.random.default_rng(seed)
    i = rng.permutation(len(tr))[:n_train] if n_train else np.arange(len(tr))
    j = rng.permutation(len(va))[:n_val] if n_val else np.arange(len(va))
    return (tr.data[i].astype(np.float32) / 255, tr.targets[i], va.data[j].astype(np.float32) / 255, va.targets[j])


def plain_vs_residual(x, y, x_val, y_val, depths=(6, 18), seeds=(0, 1), steps=120, lr=0.05, batch_size=64,
                      width=8, every=20, n_eval=256):
    """Plain and residual SmallResNets of each depth on the same data.

    Returns {"plain-6": {"train": [curve per seed], "val": [...], "seconds": s}, ...}: the error on the
    first ``n_eval`` training images and on the first ``n_eval`` held-out ones every ``every`` steps.
    Within a seed every net starts from the same random stream and sees the same batches.
    """
    out = {}
    xe, ye, xv, yv = x[:n_eval], y[:n_eval], x_val[:n_eval], y_val[:n_eval]
    for shortcut in (False, True):
        for d in depths:
            rec = {"train": [], "val": [], "seconds": 0.0}
            for s in seeds:
                md.manual_seed(s)
                net = SmallResNet(d, shortcut, width, x.shape[1], int(max(y.max(), y_val.max())) + 1)
                tr, va, t0 = [], [], time.perf_counter()
                for step, *_ in sgd_steps(net, x, y, lr, steps, batch_size, seed=s):
                    if step % every == 0:
                        tr.append(error_of(net, xe, ye))
                        va.append(error_of(net, xv, yv))
                rec["train"].append(tr)
                rec["val"].append(va)
                rec["seconds"] += time.perf_counter() - t0
            out[f"{'residual' if shortcut else 'plain'}-{d}"] = rec
    return out


def relu_tanh_map(x, y, gains=(0.5, 1, 2, 4), lrs=(0.01, 0.03, 0.1), seeds=(0,), depth=4, width=16, target=0.10,
                  max_steps=150, classes=10):
    """Steps to ``target`` running training error for both activations over init gain x learning rate.

    Returns {"steps": {(act, gain, lr): [steps or None per seed]}, "sec_per_step": {act: [s, ...]}}.
    Within a cell and seed both nets start from the same weights and see the same batches.
    """
    steps, secs = {}, {"ReLU": [], "tanh": []}
    for g in gains:
        for lr in lrs:
            for name, act in (("ReLU", md.nn.ReLU), ("tanh", md.nn.Tanh)):
                runs = []
                for s in seeds:
                    net = conv_net(act, g, depth, width, x.shape[-1], x.shape[1], classes, seed=s)
                    n, sec = steps_to_running_error(net, x, y, target, lr, max_steps, seed=s)
                    runs.append(n)
                    secs[name].append(sec)
                steps[(name, g, lr)] = runs
    return {"steps": steps, "sec_per_step": secs}


def saturation_and_gradients(x, y, gains=(0.5, 1, 2, 4), depth=4, width=16, classes=10, seed=0, n=256):
    """At initialisation, per gain and activation: the fraction of saturated units (|tanh| > 0.9, or
    ReLU output exactly 0) after every conv layer, and the gradient norm of every conv weight.

    Returns {(act, gain): {"saturated": [per layer], "grad_norm": [per layer]}} on the first n images.
    """
    from minidl.visualize import layer_outputs
    out = {}
    for g in gains:
        for name, act in (("ReLU", md.nn.ReLU), ("tanh", md.nn.Tanh)):
            net = conv_net(act, g, depth, width, x.shape[-1], x.shape[1], classes, seed=seed)
            idx = [str(i) for i, m in enumerate(net) if isinstance(m, act)]
            acts = layer_outputs(net, x[:n], idx)
            sat = [float((np.abs(acts[i]) > 0.9).mean() if name == "tanh" else (acts[i] <= 0).mean()) for i in idx]
            net.zero_grad()
            F.cross_entropy(net(md.tensor(x[:n])), y[:n]).backward()
            grads = [float(np.linalg.norm(m.weight.grad.numpy() if hasattr(m.weight.grad, "numpy") else m.weight.grad))
                     for m in net if isinstance(m, md.nn.Conv2d)]
            out[(name, g)] = {"saturated": sat, "grad_norm": grads}
    return out


def dropout_mlp(p_input, p_hidden, width=256, in_features=256, classes=10):
    """Dropout(p_input) -> [Linear -> ReLU -> Dropout(p_hidden)] x 2 -> Linear (Hinton et al. 2012's recipe)."""
    nn = md.nn
    return nn.Sequential(nn.Dropout(p_input), nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(p_hidden),
                         nn.Linear(width, width), nn.ReLU(), nn.Dropout(p_hidden), nn.Linear(width, classes))


def dropout_experiment(x, y, x_val, y_val, configs=None, seeds=(0, 1, 2), steps=400, lr=0.03, width=256, batch_size=32):
    """Held-out and training error of dropout_mlp per (p_input, p_hidden) config and seed, after ``steps`` SGD steps.

    Returns {label: {"val": [per seed], "train": [per seed]}}; within a seed every config starts
    from the same random stream and sees the same batches (only the dropout masks differ).
    """
    configs = configs or {"no dropout": (0.0, 0.0), "hidden 0.5": (0.0, 0.5), "input 0.2 + hidden 0.5": (0.2, 0.5)}
    out = {}
    for label, (pi, ph) in configs.items():
        rec = {"val": [], "train": []}
        for s in seeds:
            md.manual_seed(s)
            net = dropout_mlp(pi, ph, width, x.shape[1], classes=int(y.max()) + 1)
            for _ in sgd_steps(net, x, y, lr, steps, batch_size, seed=s):
                pass                # only the trained net is wanted
            rec["val"].append(error_of(net, x_val, y_val))
            rec["train"].append(error_of(net, x, y))
        out[label] = rec
    return out


# ------------------------------------------------------------------------------------------------
# Lesson 05: ZF's first-layer change (11x11 stride 4 -> 7x7 stride 2) with one shared head.

def zf_pair_net(first, width=16, in_channels=3, classes=4, pooled=4, seed=0, first_std=0.01):
    """conv1 (``first`` = (kernel, stride, padding)) -> ReLU -> max-pool 3/2 -> conv 3x3 (32) -> ReLU ->
    adaptive average pool to pooled x pooled -> linear: both first layers feed the same 32*pooled^2 features.

    conv1 starts from N(0, first_std^2) weights (AlexNet's 0.01), so that what its filters show after
    training is mostly what was learned, not the random start; the other layers use minidl's default init.
    """
    k, s, p = first
    md.manual_seed(seed)
    nn = md.nn
    net = nn.Sequential(nn.Conv2d(in_channels, width, k, stride=s, padding=p), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(width, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((pooled, pooled)),
                         nn.Flatten(), nn.Linear(32 * pooled * pooled, classes))
    if first_std is not None:
        w = net[0].weight
        w.data[...] = (np.random.default_rng(seed).standard_normal(w.shape) * first_std).astype(np.float32)
        net[0].bias.data[...] = 0
    return net


ZF_FIRST = {"11x11 stride 4": (11, 4, 2), "7x7 stride 2": (7, 2, 1)}


def filter_stats(net, x):
    """(dead, distinctiveness) of net[0]'s filters: dead = filters whose ReLU output is 0 on every image of x;
    distinctiveness = 1 - mean |cosine similarity| over all pairs of filters (1: all mutually orthogonal)."""
    from minidl.visualize import layer_outputs
    acts = layer_outputs(net, x, ["1"])["1"]
    dead = int((acts.max(axis=(0, 2, 3)) <= 0).sum())
    w = net[0].weight.numpy().reshape(net[0].weight.shape[0], -1)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return dead, float(1 - np.abs(w @ w.T)[np.triu_indices(len(w), 1)].mean())


def zf_comparison(x, y, x_val, y_val, seeds=(0, 1, 2), steps=400, lr=0.03, batch_size=32, width=16, weight_decay=5e-4,
                  decay=()):
    """Train both first layers with the same head, per seed; returns {name: {"nets": [...], "loss": [per-step
    losses per seed], "train_error", "val_error", "dead", "distinct", "dead0", "distinct0" (at init): [per seed]}}."""
    out = {}
    for name, first in ZF_FIRST.items():
        rec = {k: [] for k in ("nets", "loss", "train_error", "val_error", "dead", "distinct", "dead0", "distinct0")}
        for s in seeds:
            net = zf_pair_net(first, width, x.shape[1], int(y.max()) + 1, seed=s)
            d0, s0 = filter_stats(net, x_val)
            h = train_steps(net, x, y, steps, lr, batch_size, weight_decay=weight_decay, seed=s, decay=decay)
            d1, s1 = filter_stats(net, x_val)
            for k, v in (("nets", net), ("loss", h), ("train_error", error_of(net, x, y)),
                         ("val_error", error_of(net, x_val, y_val)), ("dead", d1), ("distinct", s1),
                         ("dead0", d0), ("distinct0", s0)):
                rec[k].append(v)
        out[name] = rec
    return out


def last_tenth_share(losses):
    """Share of the loss's whole fall, from the mean of the first tenth of the steps to that of the last,
    that came during the last tenth: near 0 once training has stopped making progress."""
    t = max(1, len(losses) // 10)
    first, before, last = np.mean(losses[:t]), np.mean(losses[-2 * t:-t]), np.mean(losses[-t:])
    return float((before - last) / (first - last)) if first > last else float("nan")


def train_steps(model, x, y, steps, lr, batch_size=32, momentum=0.9, weight_decay=0.0, seed=0, decay=()):
    """``steps`` SGD steps on shuffled mini-batches; returns the per-step training losses."""
    return [loss for *_, loss in sgd_steps(model, x, y, lr, steps, batch_size, momentum, weight_decay, seed, decay)]


def gabor(size=11, wavelength=5.0, theta=np.pi / 4, sigma=None):
    """An oriented (size, size) Gabor filter: a cosine of ``wavelength`` pixels across direction ``theta``
    under a Gaussian of std ``sigma`` (default size / 4); zero mean, absolute values summing to 1."""
    sigma = sigma or size / 4
    r = np.arange(size) - size // 2
    X, Y = np.meshgrid(r, r)
    g = np.exp(-(X ** 2 + Y ** 2) / (2 * sigma ** 2)) * np.cos(2 * np.pi * (X * np.cos(theta) + Y * np.sin(theta)) / wavelength)
    g = g - g.mean()
    return (g / np.abs(g).sum()).astype(np.float32)


def strided_responses(image, filt, strides=(1, 2, 4)):
    """{stride: (H', W') response of one (H, W) image to one (k, k) filter} with minidl's conv2d, no padding."""
    x, w = md.tensor(image[None, None].astype(np.float32)), md.tensor(filt[None, None])
    with md.no_grad():
        return {s: F.conv2d(x, w, None, s, 0).numpy()[0, 0] for s in strides}


def aliased_share(response, stride):
    """The share of a stride-1 response's spectral energy (mean removed) at frequencies that a grid of
    step ``stride`` cannot hold (|f| > 1 / (2 stride) cycles per pixel along y or x): what subsampling folds back."""
    P = np.abs(np.fft.fft2(response - response.mean())) ** 2
    fy, fx = np.fft.fftfreq(response.shape[0])[:, None], np.fft.fftfreq(response.shape[1])[None, :]
    out = (np.abs(fy) > 0.5 / stride) | (np.abs(fx) > 0.5 / stride)
    return float(P[out].sum() / P.sum())
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


# ------------------------------------------------------------------------------------------------
# torchvision's ImageNet AlexNet, where its weights are cached (lessons 01 and 05): pretrained.py
from pretrained import (pretrained_alexnet, missing_weights_message, top5, photo_crops, fig2,  # noqa: E402,F401
                        show_png, DOWNLOAD_COMMAND)
