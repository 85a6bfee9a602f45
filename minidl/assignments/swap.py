""""Your layers train AlexNet": the student's conv, ReLU, max-pool, LRN, dropout, linear and loss inside
the default TinyAlexNet, trained on the embedded digits as ``minidl train`` trains it (same data, seed,
epochs, SGD settings and step schedule), next to the same run with minidl's own layers.

Before training, each student layer is swapped in alone and one batch is run forward and backward in
float64 against the library net with the same weights: a layer that changes the loss or any gradient is
named, so a NaN or a net that does not learn points at the layer that caused it.
"""
import math
import time

import numpy as np

from minidl import backend, nn, optim, random
from minidl.assignments import composites
from minidl.assignments.grader import Names, Missing, _quiet, _exception_text
from minidl.autograd import Tensor

from minidl.models.tiny_alexnet import TinyAlexNet

# the layers that are swapped in, by task name, and the starter file each comes from
LAYERS = {"conv": "part2_conv.py", "relu": "part1_basics.py", "max_pool": "part3_pool.py",
          "lrn": "part4_lrn_dropout.py", "dropout": "part4_lrn_dropout.py", "linear": "part1_basics.py",
          "softmax_cross_entropy": "part1_basics.py"}
TOLERANCE = 0.02  # the student's top-1 error may exceed the library's by this much (held-out noise, 359 images)


# ---- the student's layers as modules holding the library layer's parameters ---------------------------
def _int(v, what):
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if v[0] != v[1]:
        raise ValueError(f"assignments train: the student's layers take a square {what}, got {v}")
    return int(v[0])


class _Swapped(nn.Module):
    def __init__(self, kind, fn):
        super().__init__()
        self.kind, self.fn = kind, fn

    def extra_repr(self):
        return f"student's {self.kind}"


class StudentConv2d(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("conv", ns.Conv2d)
        self.weight, self.bias = layer.weight, layer.bias
        self.stride, self.padding = _int(layer.stride, "stride"), _int(layer.padding, "padding")
        self.groups = layer.groups

    def forward(self, x):
        return self.fn(self.stride, self.padding, self.groups)(x, self.weight, self.bias)


class StudentLinear(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("linear", ns.Linear)
        self.weight, self.bias = layer.weight, layer.bias

    def forward(self, x):
        return self.fn()(x, self.weight, self.bias)


class StudentReLU(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("relu", ns.ReLU)

    def forward(self, x):
        return self.fn()(x)


class StudentMaxPool2d(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("max_pool", ns.MaxPool2d)
        self.args = (_int(layer.kernel_size, "kernel"), _int(layer.stride, "stride"),
                     _int(layer.padding, "padding"), layer.ceil_mode)

    def forward(self, x):
        return self.fn(*self.args)(x)


class StudentLRN(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("lrn", ns.LocalResponseNorm)
        self.args = (layer.size, layer.alpha, layer.beta, layer.k)

    def forward(self, x):
        return self.fn(*self.args)(x)


class StudentDropout(_Swapped):
    def __init__(self, layer, ns):
        super().__init__("dropout", ns.Dropout)
        self.p = layer.p

    def forward(self, x):
        return self.fn(self.p, self.training)(x)


_WRAPPERS = [(nn.Conv2d, "conv", StudentConv2d), (nn.Linear, "linear", StudentLinear),
             (nn.ReLU, "relu", StudentReLU), (nn.MaxPool2d, "max_pool", StudentMaxPool2d),
             (nn.LocalResponseNorm, "lrn", StudentLRN), (nn.Dropout, "dropout", StudentDropout)]


def swap_layers(model, ns, kinds):
    """Replace, in place, every library layer of the given kinds by the student's; returns the swapped paths."""
    swapped = []
    for path, m in list(model.named_modules()):
        for name, child in list(m._modules.items()):
            for cls, kind, wrapper in _WRAPPERS:
                if kind in kinds and type(child) is cls:
                    new = wrapper(child, ns)
                    m._modules[name] = new  # in place: a Sequential runs its children in this dict's order
                    object.__setattr__(m, name, new)
                    swapped.append(f"{path}.{name}" if path else name)
    return swapped


def loss_function(ns, use_student):
    from minidl import functional as F
    if not use_student:
        return F.cross_entropy

    def loss(logits, target):
        t = backend.as_numpy(target.data if isinstance(target, Tensor) else target).astype(np.int64)
        return ns.SoftmaxCrossEntropy(t)(logits)
    return loss


# ---- data and the run, as `minidl train` does them ------------------------------------------------------
def _setup(seed, batch_size):
    from minidl.data import DataLoader, presets
    config = dict(presets.data_config("digits"), seed=seed, batch_size=batch_size)
    random.manual_seed(seed)
    model = TinyAlexNet(len(config["classes"]), config["in_channels"], config["image_size"])
    train_set = presets.build_dataset(config, True, presets.make_transform(config, "train"))
    test_set = presets.build_dataset(config, False, presets.make_transform(config, "test"))
    train_loader = DataLoader(train_set, batch_size, shuffle=True, seed=seed)
    test_loader = DataLoader(test_set, max(batch_size, 64))
    return model, train_loader, test_loader


class Diverged(RuntimeError):
    pass


def train_once(ns, kinds, epochs, seed, batch_size, lr, momentum, weight_decay, log=print, label=""):
    """Train TinyAlexNet with the student's ``kinds`` swapped in (none: minidl's layers).
    Returns the held-out {"top1", "top5", "loss"}; raises Diverged naming the step of a NaN/Inf loss."""
    from minidl.metrics import evaluate
    from minidl.train import make_schedule
    model, train_loader, test_loader = _setup(seed, batch_size)
    swap_layers(model, ns, kinds)
    loss_fn = loss_function(ns, "softmax_cross_entropy" in kinds)
    opt = optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    sched = make_schedule(opt, "step", epochs)
    step = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        train_loader.set_epoch(epoch)
        for x, y in train_loader:
            loss = loss_fn(model(Tensor(x)), y)
            value = float(np.asarray(loss.data).reshape(-1)[0])
            step += 1
            if not math.isfinite(value):
                raise Diverged(f"the loss is {value} at step {step} (epoch {epoch + 1})")
            model.zero_grad()
            loss.backward()
            opt.step()
        ev = evaluate(model, test_loader)
        sched.step(ev["top1"])
        log(f"{label}epoch {epoch + 1}/{epochs}  held-out top-1 error {100 * ev['top1']:.1f}%  "
            f"top-5 error {100 * ev['top5']:.1f}%  ({time.perf_counter() - t0:.1f} s)")
    return ev


# ---- one student layer at a time, one batch, float64 ---------------------------------------------------
def _grads(model, loss_fn, x, y):
    model.zero_grad()
    loss = loss_fn(model(Tensor(x)), y)
    loss.backward()
    return float(np.asarray(loss.data).reshape(-1)[0]), {k: p.grad for k, p in model.named_parameters()}


def diagnose(ns, kinds, seed=0, batch_size=32):
    """{kind: None (agrees) or a reason} from swapping each student layer in alone. The net runs in eval
    mode (dropout off, so the comparison is exact); the dropout is judged by its task's check."""
    from minidl.assignments.grader import run_check
    from minidl.assignments.tasks import TASKS
    model, train_loader, _ = _setup(seed, batch_size)
    state = model.state_dict()
    x, y = next(iter(train_loader))
    x = np.asarray(x, dtype=np.float64)

    def fresh():
        m, _, _ = _setup(seed, batch_size)
        m.load_state_dict(state)
        composites._float64(m)
        return m.eval()

    ref_loss, ref_grads = _grads(fresh(), loss_function(ns, False), x, y)
    out = {}
    for kind in kinds:
        if kind == "dropout":
            r = run_check(TASKS["dropout"], ns)
            out[kind] = None if r.passed else f"its check says {r.verdict}: {r.reason}"
            continue
        m = fresh()
        swap_layers(m, ns, {kind})
        try:
            with _quiet():
                loss, grads = _grads(m, loss_function(ns, kind == "softmax_cross_entropy"), x, y)
        except NotImplementedError:
            out[kind] = "not written yet (NotImplementedError)"
            continue
        except Exception as e:
            out[kind] = f"raises {_exception_text(e, ns.path)}"
            continue
        if not math.isfinite(loss):
            out[kind] = f"the loss becomes {loss}"
            continue
        if abs(loss - ref_loss) > 1e-6 * max(1.0, abs(ref_loss)):
            out[kind] = f"the loss changes: {loss:.6g} with it, {ref_loss:.6g} with minidl's layer"
            continue
        worst = None
        for k, g in ref_grads.items():
            mine = grads.get(k)
            if mine is None:
                worst = (k, float("inf"))
                break
            mine = np.asarray(mine, dtype=np.float64)
            if not np.all(np.isfinite(mine)):
                worst = (k, float("nan"))
                break
            rel = float(np.abs(mine - g).max() / max(np.abs(g).max(), 1e-12))
            if rel > 1e-6 and (worst is None or rel > worst[1]):
                worst = (k, rel)
        if worst is not None:
            k, rel = worst
            what = ("gets no gradient" if rel == float("inf") else "gets NaN or Inf" if rel != rel
                    else f"is off by {100 * rel:.3g}% of its largest element")
            out[kind] = f"the gradient of {k} {what}"
        else:
            out[kind] = None
    return out


def _load(folder):
    import os
    names = {}
    for kind, file in LAYERS.items():
        path = os.path.join(folder, file)
        if path not in names:
            names[path] = load_names(path)
    merged = {}
    for ns in names.values():
        merged.update(ns.values)
    return Names(merged, "your files", None)


def load_names(path):
    from minidl.assignments.grader import load_file
    return load_file(path)


def run(folder, epochs=None, seed=None, reference=True, log=print):
    """``minidl assignments train DIR``. Returns 0 when the student's net reaches minidl's error within
    TOLERANCE, 1 otherwise (diverged, no learning, a layer that raises or is missing)."""
    from minidl.train import DEFAULTS
    epochs = DEFAULTS["epochs"] if epochs is None else epochs
    seed = DEFAULTS["seed"] if seed is None else seed
    settings = dict(epochs=epochs, seed=seed, batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
                    momentum=DEFAULTS["momentum"], weight_decay=DEFAULTS["weight_decay"])
    try:
        ns = _load(folder)
    except Missing as e:
        log(f"minidl assignments train: {e}")
        return 1
    kinds = list(LAYERS)
    log("your layers in TinyAlexNet, one at a time, on one batch (float64) against minidl's:")
    found = diagnose(ns, kinds, seed, settings["batch_size"])
    for kind in kinds:
        log(f"  {kind:<22} " + ("agrees" if found[kind] is None else f"DIFFERS: {found[kind]}"))
    broken = [k for k in kinds if found[k] is not None]
    unusable = [k for k in broken if found[k].startswith(("not written", "raises"))]
    if unusable:
        log(f"cannot train: {', '.join(unusable)} " + ("is" if len(unusable) == 1 else "are") + " not usable yet")
        return 1
    log(f"training TinyAlexNet with your {', '.join(kinds)} on the digits ({epochs} epochs, seed {seed}):")
    try:
        with _quiet_numpy():
            mine = train_once(ns, set(kinds), log=log, label="  yours   ", **settings)
    except Diverged as e:
        blame = ", ".join(broken) if broken else "none of the layers differs on the first batch; look at " \
                                                  "float32 overflow (e.g. softmax without the max shift)"
        log(f"training diverged: {e}. Suspects: {blame}")
        return 1
    except Exception as e:
        log(f"training stopped: {_exception_text(e, None)}")
        return 1
    if not reference:
        log(f"your layers: top-1 error {100 * mine['top1']:.1f}%  top-5 error {100 * mine['top5']:.1f}%")
        return 0 if not broken else 1
    log("the same run with minidl's own layers:")
    ref = train_once(ns, set(), log=log, label="  minidl  ", **settings)
    log(f"top-1 error: yours {100 * mine['top1']:.1f}%, minidl's {100 * ref['top1']:.1f}% "
        f"(allowed: up to {100 * (ref['top1'] + TOLERANCE):.1f}%)")
    if mine["top1"] <= ref["top1"] + TOLERANCE:
        log("your layers train TinyAlexNet as well as minidl's")
        return 0
    chance = 1 - 1 / 10
    what = "did not learn" if mine["top1"] > chance - 0.05 else "learned worse than minidl's layers"
    log(f"your net {what}. " + (f"Suspects: {', '.join(broken)}" if broken else
                                "Every layer agrees on the first batch; check the dropout in training"))
    return 1


class _quiet_numpy:
    """Overflow in a student's float32 layer shows up as a NaN loss, not as a flood of warnings."""

    def __enter__(self):
        self.old = np.seterr(all="ignore")

    def __exit__(self, *exc):
        np.seterr(**self.old)
