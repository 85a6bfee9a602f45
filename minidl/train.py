"""The training loop any model can use, its checkpoints, and the pieces behind ``minidl train``.

    from minidl import train, data
    model = train.tiny_alexnet(num_classes=10, in_channels=1)
    trainer = train.Trainer(model, train_loader, test_loader, epochs=5, lr=0.02, out_dir="runs/demo")
    history = trainer.fit()                 # or trainer.fit(resume=True) after an interruption

One epoch: for every batch, forward, cross-entropy (plus 0.3 x each auxiliary loss when a model
such as GoogLeNet returns ``(logits, aux1, aux2)`` in training), backward, the ``after_backward``
hook (where a distributed run averages gradients), SGD step. Then the held-out split is
evaluated (top-1/top-5 error), the epoch schedule steps, and — on the main process only
(``is_main``) — the run folder is updated atomically:

    checkpoint.npz   model, optimiser, schedules, epoch, step, RNG and loader states, history
    log.csv          epoch, train loss/error, held-out loss, top-1, top-5, learning rate
    curves.png       loss and error per epoch (drawn with Pillow)
    filters.png      the first conv layer's filters (after the last epoch)
    model.npz        the final weights (``Module.load`` reads it)
    config.json      how to rebuild model and data (``minidl eval``/``classify`` read it)

A NaN or Inf loss stops the run with ``TrainingDiverged`` naming the step; the checkpoint of the
last finished epoch stays untouched. Resuming restores every state the next epoch depends on, so
on the CPU an interrupted and resumed run ends with the same weights, bit for bit, as one that
ran straight through.
"""
import csv
import io
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from minidl import backend, nn, optim, random
from minidl import functional as F
from minidl.autograd import Tensor
from minidl.metrics import evaluate, format_errors, topk_correct

CHECKPOINT = "checkpoint.npz"
FORMAT = "minidl-checkpoint"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; ``step`` is the global step (1-based) where it happened."""

    def __init__(self, message, step=None, epoch=None):
        super().__init__(message)
        self.step, self.epoch = step, epoch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (missing, truncated, corrupt, or for another model)."""


# ---- the default net -----------------------------------------------------------------------------
class TinyAlexNet(nn.Module):
    """AlexNet in miniature for 32x32 inputs: the same ingredients at a size a laptop trains in
    a minute — conv + ReLU + LRN + overlapping 3x3/2 max-pooling, twice, then a dropout-regularised
    fully connected classifier.

        conv1  5x5, 16, pad 2   32 -> 32    ReLU, LRN(5), max-pool 3x3/2 -> 15
        conv2  5x5, 32, pad 2   15 -> 15    ReLU, LRN(5), max-pool 3x3/2 -> 7
        fc3    32*7*7 -> 128    ReLU, dropout 0.5
        fc4    128 -> num_classes

    (AlexNet: 96/256 filters, 4096 hidden units and dropout before both of its first two fully
    connected layers; here one dropout keeps a two-minute CPU run converging.)
    """

    def __init__(self, num_classes=10, in_channels=1, image_size=32, width=(16, 32), hidden=128, dropout=0.5):
        super().__init__()
        c1, c2 = width
        side = image_size
        for _ in range(2):
            side = (side - 3) // 2 + 1  # each 3x3/2 pool
        if side < 1:
            raise ValueError(f"tiny_alexnet: image_size {image_size} is too small (needs >= 7)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        # He et al. (2015) initialisation, N(0, 2 / fan_in), zero biases: with PyTorch's smaller
        # default init this net needs several times more epochs to get going.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = int(np.prod(m.weight.shape[1:]))
                std = np.float32(np.sqrt(2.0 / fan_in))
                m.weight.data = random.generator().standard_normal(m.weight.shape, dtype=np.float32) * std
                m.bias.data = np.zeros(m.bias.shape, dtype=np.float32)

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_alexnet(num_classes=10, in_channels=1, image_size=32, **kwargs):
    return TinyAlexNet(num_classes, in_channels, image_size, **kwargs)


# ---- files ---------------------------------------------------------------------------------------
def _atomic_write(path, write):
    """Call ``write(file)`` on a temp file next to ``path``, then rename it into place."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give the file an ordinary new file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path, model, optimizer, meta):
    """One .npz: ``model/<key>`` and ``optim/<i>/<name>`` arrays plus a JSON ``meta`` string
    (epoch, step, learning rate, schedule/RNG/loader states, history, config). No pickle."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    for i, st in osd["state"].items():
        for name, a in st.items():
            arrays[f"optim/{i}/{name}"] = a
    meta = dict(meta, format=FORMAT, version=1, optimizer={"lr": osd["lr"]})
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path):
    """``(model_state, optimizer_state, meta)`` from a checkpoint, or ``CheckpointError`` naming the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}  # reading every member checks every CRC
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt, truncated or not a "
                              f"minidl checkpoint ({type(e).__name__}: {e})") from None
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_state = {"lr": meta["optimizer"]["lr"], "state": {}}
    for k, v in arrays.items():
        if k.startswith("optim/"):
            _, i, name = k.split("/", 2)
            optim_state["state"].setdefault(int(i), {})[name] = v
    return model_state, optim_state, meta


def read_weights(path):
    """Model weights from a checkpoint, a run folder, or a plain ``Module.save`` .npz."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("model.npz", CHECKPOINT):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = f.files
            if "meta" in keys:
                return read_checkpoint(path)[0]
            return {k: f[k] for k in keys}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot read weights {path}: the file is corrupt or not an .npz "
                              f"({type(e).__name__}: {e})") from None


def write_log(path, history):
    """The per-epoch log as CSV (rewritten whole each epoch, atomically)."""
    cols = ["epoch", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error", "lr", "seconds"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in history:
        w.writerow([_fmt(row.get(c)) for c in cols])
    _atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curves(history, path, size=(900, 380)):
    """Two panels drawn with Pillow: loss per epoch (train, held-out) and error per epoch
    (train top-1, held-out top-1 and top-5, in %). Written atomically as PNG."""
    from PIL import Image, ImageDraw
    W, H = size
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    epochs = [r["epoch"] for r in history]
    panels = [("loss", [("train", "train_loss", (31, 119, 180)), ("held-out", "val_loss", (255, 127, 14))], 1.0),
              ("error %", [("train top-1", "train_top1_error", (31, 119, 180)),
                           ("held-out top-1", "val_top1_error", (255, 127, 14)),
                           ("held-out top-5", "val_top5_error", (44, 160, 44))], 100.0)]
    pw = W // 2
    for p, (title, series, scale) in enumerate(panels):
        x0, y0, x1, y1 = p * pw + 55, 30, p * pw + pw - 15, H - 40
        d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
        d.text((x0, 8), title + " per epoch", fill=(0, 0, 0))
        values = [r.get(key) * scale for _, key, _ in series for r in history
                  if r.get(key) is not None and math.isfinite(r.get(key))]
        if not values or not epochs:
            continue
        lo, hi = min(0.0, min(values)), max(values)
        hi = hi if hi > lo else lo + 1.0
        e_lo, e_hi = min(epochs), max(epochs)
        span = max(e_hi - e_lo, 1)

        def xy(e, v):
            return (x0 + 8 + (x1 - x0 - 16) * (e - e_lo) / span, y1 - 5 - (y1 - y0 - 10) * (v - lo) / (hi - lo))

        for t in range(5):  # y ticks
            v = lo + (hi - lo) * t / 4
            _, y = xy(e_lo, v)
            d.line([x0 - 4, y, x0, y], fill=(0, 0, 0))
            d.text((x0 - 50, y - 6), f"{v:.3g}", fill=(0, 0, 0))
        for e in sorted(set(epochs)):  # x ticks
            x, _ = xy(e, lo)
            d.line([x, y1, x, y1 + 4], fill=(0, 0, 0))
            if len(epochs) <= 20 or e % max(1, len(epochs) // 10) == 0:
                d.text((x - 3, y1 + 6), str(e), fill=(0, 0, 0))
        d.text(((x0 + x1) // 2 - 15, H - 16), "epoch", fill=(0, 0, 0))
        for s, (label, key, colour) in enumerate(series):
            pts = [xy(r["epoch"], r[key] * scale) for r in history
                   if r.get(key) is not None and math.isfinite(r[key])]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for x, y in pts:
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            d.line([x1 - 130, y0 + 12 + 14 * s, x1 - 110, y0 + 12 + 14 * s], fill=colour, width=2)
            d.text((x1 - 105, y0 + 6 + 14 * s), label, fill=(0, 0, 0))
    _atomic_write(path, lambda f: img.save(f, format="PNG"))
    return img


def first_conv(model):
    """The first Conv2d of a model (in registration order), or None."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None


def save_first_filters(model, path):
    """A PNG grid of the first conv layer's filters (minidl.visualize); False if there is no conv."""
    conv = first_conv(model)
    if conv is None:
        return False
    from minidl.visualize.filters import filter_grid
    img = filter_grid(conv.weight)
    if min(img.size) < 320:  # a small first layer (5x5 filters) would make a thumbnail: enlarge, pixels kept sharp
        factor = -(-320 // min(img.size))
        img = img.resize((img.width * factor, img.height * factor), resample=0)  # 0: nearest neighbour
    _atomic_write(path, lambda f: img.save(f, format="PNG"))
    return True


# ---- the loop ------------------------------------------------------------------------------------
def compute_loss(output, target, aux_weight=0.3):
    """Cross-entropy of the main output, plus ``aux_weight`` x each auxiliary output's loss when the
    model returned a tuple ``(logits, aux1, ...)`` (GoogLeNet in training). Returns (loss, logits)."""
    if isinstance(output, (tuple, list)):
        main, aux = output[0], [a for a in output[1:] if a is not None]
        loss = F.cross_entropy(main, target)
        for a in aux:
            loss = loss + aux_weight * F.cross_entropy(a, target)
        return loss, main
    return F.cross_entropy(output, target), output


class Trainer:
    """Train ``model`` on ``train_loader`` for ``epochs`` epochs, evaluating on ``val_loader``.

    Optimiser: SGD(lr, momentum, weight_decay) unless ``optimizer`` is given. ``schedule`` is
    stepped once per epoch with the held-out top-1 error (``optim.StepLR``,
    ``optim.ReduceLROnPlateau``…); ``batch_schedule`` once per step (``optim.WarmupLR``).

    Hooks for distributed training: ``after_backward(trainer)`` runs between backward and the
    optimiser step (average gradients across processes there); ``shared_metric(value)`` returns
    the value every process steps the epoch schedule with (rank 0's, so a plateau schedule lowers
    the rate on all ranks alike); only the process with ``is_main=True`` writes files and prints. ``callbacks`` get ``on_step(trainer, loss)`` and
    ``on_epoch_end(trainer, row)`` if they define them.
    """

    def __init__(self, model, train_loader, val_loader=None, *, epochs=10, lr=0.01, momentum=0.9,
                 weight_decay=5e-4, optimizer=None, schedule=None, batch_schedule=None, device="cpu",
                 out_dir=None, aux_weight=0.3, progress=None, is_main=True, after_backward=None,
                 callbacks=(), config=None, log=None, save_filters=True, lr_factor=1, shared_metric=None):
        self.device = backend.check_device(device)
        self.model = model.to(self.device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs = int(epochs)
        self.optimizer = optimizer or optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
        self.schedule, self.batch_schedule = schedule, batch_schedule
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.aux_weight = aux_weight
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.is_main = is_main
        self.after_backward = after_backward
        self.callbacks = list(callbacks)
        self.config = dict(config or {})
        self.log = log if log is not None else (print if is_main else (lambda *a, **k: None))
        self.save_filters = save_filters
        self.lr_factor = lr_factor  # the optimiser's lr is the config's times this (the ranks, when scaled)
        self.shared_metric = shared_metric
        self.epoch = 0      # epochs finished
        self.step = 0       # optimiser steps taken
        self.history = []

    # ---- paths and state -------------------------------------------------------------------------
    def path(self, name):
        return os.path.join(self.out_dir, name) if self.out_dir else None

    @property
    def checkpoint_path(self):
        return self.path(CHECKPOINT)

    def save_checkpoint(self, path=None):
        meta = {"epoch": self.epoch, "step": self.step, "history": self.history, "config": self.config,
                "rng": random.get_state(), "loader": self.train_loader.state_dict(),
                "schedule": self.schedule.state_dict() if self.schedule is not None else None,
                "batch_schedule": self.batch_schedule.state_dict() if self.batch_schedule is not None else None,
                "lr_factor": self.lr_factor}
        save_checkpoint(path or self.checkpoint_path, self.model, self.optimizer, meta)

    def load_checkpoint(self, path=None):
        path = path or self.checkpoint_path
        model_state, optim_state, meta = read_checkpoint(path)
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optim_state)
        except (KeyError, ValueError, IndexError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this model/optimiser: {e}") from None
        if self.schedule is not None and meta.get("schedule") is not None:
            self.schedule.load_state_dict(meta["schedule"])
        if self.batch_schedule is not None and meta.get("batch_schedule") is not None:
            self.batch_schedule.load_state_dict(meta["batch_schedule"])
        # a run saved on N ranks with a linearly scaled lr resumed on M: the lr (and the schedules'
        # base) follow the rule for M ranks
        rescale = self.lr_factor / meta.get("lr_factor", 1)
        if rescale != 1:
            self.optimizer.lr *= rescale
            for s in (self.schedule, self.batch_schedule):
                if s is not None and hasattr(s, "base_lr"):
                    s.base_lr *= rescale
        random.set_state(meta["rng"])
        self.train_loader.load_state_dict(meta["loader"])
        self.epoch, self.step, self.history = int(meta["epoch"]), int(meta["step"]), list(meta["history"])
        return meta

    # ---- training --------------------------------------------------------------------------------
    def train_epoch(self, epoch):
        """One pass over the training loader; returns the epoch's mean loss and running top-1 error."""
        from tqdm import tqdm
        self.model.train()
        self.train_loader.set_epoch(epoch)
        total_loss, wrong, seen = 0.0, 0, 0
        bar = tqdm(self.train_loader, total=len(self.train_loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not (self.progress and self.is_main), leave=False, dynamic_ncols=True, file=sys.stderr)
        for batch, (x, y) in enumerate(bar):
            x = Tensor(backend.to_device(x, self.device))
            output = self.model(x)
            loss, logits = compute_loss(output, y, self.aux_weight)
            value = float(loss.item())
            self.step += 1
            if not math.isfinite(value):
                bar.close()
                kept = (f"; the last good checkpoint (epoch {self.epoch}) is {self.checkpoint_path}"
                        if self.checkpoint_path and os.path.isfile(self.checkpoint_path) else "")
                raise TrainingDiverged(f"loss is {value} at step {self.step} (epoch {epoch + 1}, batch {batch + 1}): "
                                       f"training stopped — try a lower learning rate{kept}",
                                       step=self.step, epoch=epoch + 1)
            self.model.zero_grad()
            loss.backward()
            if self.after_backward is not None:
                self.after_backward(self)
            self.optimizer.step()
            if self.batch_schedule is not None:
                self.batch_schedule.step()
            n = len(y)
            total_loss += value * n
            seen += n
            wrong += n - topk_correct(logits.data if backend.device_of(logits.data) == "cpu"
                                      else backend.as_numpy(logits.data), y, (1,))[1]
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", err=f"{100 * wrong / seen:.1f}%", refresh=False)
            for cb in self.callbacks:
                if hasattr(cb, "on_step"):
                    cb.on_step(self, value)
        bar.close()
        if seen == 0:
            raise ValueError("Trainer: the training loader gave no batches")
        return total_loss / seen, wrong / seen

    def fit(self, resume=False):
        """Train up to ``epochs`` epochs (continuing from the checkpoint when ``resume``).

        ``resume`` may be True (this run's ``checkpoint.npz``) or a checkpoint path. Returns the
        history: one dict per epoch.
        """
        if resume:
            meta = self.load_checkpoint(None if resume is True else resume)
            self.log(f"resumed from {resume if resume is not True else self.checkpoint_path} "
                     f"after epoch {meta['epoch']} (step {meta['step']})")
        if self.out_dir and self.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            if self.config:
                _atomic_write(self.path("config.json"), lambda f: f.write(json.dumps(self.config, indent=2).encode()))
        for epoch in range(self.epoch, self.epochs):
            t0 = time.perf_counter()
            lr = self.optimizer.lr
            train_loss, train_err = self.train_epoch(epoch)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_top1_error": train_err, "lr": lr}
            if self.val_loader is not None:
                ev = evaluate(self.model, self.val_loader, self.device)
                row.update(val_loss=ev["loss"], val_top1_error=ev["top1"], val_top5_error=ev["top5"])
            if self.schedule is not None:
                metric = row.get("val_top1_error", train_err)
                if self.shared_metric is not None:
                    metric = self.shared_metric(metric)
                self.schedule.step(metric)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            self.epoch = epoch + 1
            self.history.append(row)
            if self.is_main:
                msg = f"epoch {epoch + 1}/{self.epochs}  loss {train_loss:.4f}  train error {100 * train_err:.1f}%"
                if "val_top1_error" in row:
                    msg += f"  held-out {format_errors(row['val_top1_error'], row['val_top5_error'])}"
                self.log(msg + f"  lr {lr:.3g}  ({row['seconds']:.1f} s)")
                if self.out_dir:
                    self.save_checkpoint()
                    write_log(self.path("log.csv"), self.history)
                    plot_curves(self.history, self.path("curves.png"))
            for cb in self.callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(self, row)
        if self.is_main and self.out_dir:
            self.model.save(self.path("model.npz"))
            if self.save_filters:
                save_first_filters(self.model, self.path("filters.png"))
        return self.history


def fit(model, train_loader, val_loader=None, resume=False, **kwargs):
    """``Trainer(model, train_loader, val_loader, **kwargs).fit(resume)``; returns the Trainer."""
    trainer = Trainer(model, train_loader, val_loader, **kwargs)
    trainer.fit(resume)
    return trainer


# ---- what the `minidl` command runs --------------------------------------------------------------
DEFAULTS = {"model": "tiny_alexnet", "data": "digits", "epochs": 4, "batch_size": 32, "lr": 0.03,
            "momentum": 0.9, "weight_decay": 5e-4, "seed": 0}


def build_model(config):
    """The model a run config names: ``tiny_alexnet`` or any name in ``minidl.models.MODELS``."""
    name, k = config["model"], len(config["classes"]) if "classes" in config else config["num_classes"]
    if name == "tiny_alexnet":
        return tiny_alexnet(k, config["in_channels"], config["image_size"])
    from minidl import models
    return models.get_model(name, num_classes=k)


def model_input(name):
    """(channels, size) a named model takes, or (None, None) for the tiny net (it adapts to the data)."""
    if name == "tiny_alexnet":
        return None, None
    from minidl import models
    c, h, _ = models.input_shape(name)
    return c, h


def make_schedule(optimizer, kind, epochs):
    if kind in (None, "none"):
        return None
    if kind == "step":  # one drop by 10x for the last third of the run
        return optim.StepLR(optimizer, step_size=max(1, -(-2 * epochs // 3)), gamma=0.1)
    if kind == "plateau":
        return optim.ReduceLROnPlateau(optimizer, factor=0.1, patience=1)
    raise ValueError(f"unknown schedule {kind!r}: choose step, plateau or none")


def _run_dir(out, resume, create=True):
    """The run folder: ``out``, runs/latest's target when resuming, or a new runs/<date-time>
    (made and linked as runs/latest only when ``create``; else ``_make_run_dir`` does it later)."""
    runs = "runs"
    if out is not None:
        return out
    latest = os.path.join(runs, "latest")
    if resume:
        if not os.path.exists(latest):
            raise CheckpointError(f"--resume without --out: no {latest} to resume (give --out RUN_DIR)")
        return os.path.realpath(latest)
    out = os.path.join(runs, time.strftime("%Y%m%d-%H%M%S"))
    while os.path.exists(out):
        out += "_"
    if create:
        _make_run_dir(out)
    return out


def _make_run_dir(out):
    """Create a new run folder and point runs/latest (beside it) at it."""
    latest = os.path.join(os.path.dirname(out), "latest")
    os.makedirs(out)
    try:  # runs/latest -> the newest run (a convenience; not every file system has symlinks)
        if os.path.islink(latest) or os.path.exists(latest):
            os.remove(latest)
        os.symlink(os.path.basename(out), latest)
    except OSError:
        pass
    return out


def read_config(path):
    """The config.json of a run folder, or of the folder a checkpoint/weights file is in (None if absent)."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    p = os.path.join(folder, "config.json")
    if not os.path.isfile(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {p}: {type(e).__name__}: {e}") from None


def run_training(model=None, data=None, epochs=None, batch_size=None, lr=None, momentum=None, weight_decay=None,
                 device="cpu", out=None, resume=False, seed=None, workers=0, progress=None, schedule="step",
                 log=print, distributed=False, lr_scaling="linear", warmup_epochs=0, sync_batchnorm=False):
    """``minidl train``: build model and data, train with checkpoints, print the final held-out errors.

    distributed: one replica per MPI rank (``mpiexec -n N minidl train --distributed``; see
    minidl.distributed.training): lr multiplied by N (``lr_scaling="linear"``, or "none"),
    ``warmup_epochs`` of gradual warm-up, ``sync_batchnorm`` for BN statistics over all ranks.

    Returns ``(trainer, {"top1", "top5", ...})``. Arguments left None take ``DEFAULTS`` (or, when
    resuming, the values stored in the run's config.json).
    """
    from minidl.data import DataLoader, presets
    args = {"model": model, "data": data, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "momentum": momentum, "weight_decay": weight_decay, "seed": seed}
    world, is_main = 1, True
    if distributed:
        from minidl import distributed as dist
        from minidl.distributed import training as dist_training
        world, is_main = dist.init().Get_size(), dist.is_main()
        log = log if is_main else dist_training.silent
        out = dist_training.shared_run_dir(_run_dir, out, resume)
    else:  # a new runs/<date-time> is made (and linked as runs/latest) only once model, data and device are set
        new_dir = out is None and not resume
        out = _run_dir(out, resume, create=False)
    config = None
    if resume:
        config = read_config(out)
        if config is None:
            raise CheckpointError(f"cannot resume: {os.path.join(out, 'config.json')} does not exist")
        for k in ("model", "data", "batch_size", "seed"):
            if args[k] is not None and args[k] != config[k]:
                raise ValueError(f"--resume: this run used --{k.replace('_', '-')} {config[k]}, not {args[k]}")
        config = dict(config, **{k: v for k, v in args.items() if v is not None})
    else:
        settings = {k: (v if v is not None else DEFAULTS[k]) for k, v in args.items()}
        channels, size = model_input(settings["model"])
        config = dict(presets.data_config(settings["data"], size, channels), **settings, schedule=schedule)
    random.manual_seed(config["seed"])
    net = build_model(config)
    train_set = presets.build_dataset(config, True, presets.make_transform(config, "train"))
    test_set = presets.build_dataset(config, False, presets.make_transform(config, "test"))
    if len(test_set) == 0:
        raise ValueError(f"--data {config['data']}: the held-out split is empty (a folder without train/ and val/ "
                         f"holds out 10% of each class: give each class at least 6 images)")
    train_loader = DataLoader(train_set, config["batch_size"], shuffle=True, num_workers=workers, seed=config["seed"])
    test_loader = DataLoader(test_set, max(config["batch_size"], 64), num_workers=workers)
    opt = optim.SGD(net.parameters(), config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"])
    if distributed:  # broadcast weights, shard the loader, average gradients, scale lr
        opt = dist_training.prepare(net, opt, train_loader, sync_batchnorm, lr_scaling)
    sched = make_schedule(opt, config.get("schedule"), config["epochs"])
    warm = dist_training.warmup(opt, warmup_epochs, len(train_loader), world) if distributed else (
        optim.WarmupLR(opt, int(round(warmup_epochs * len(train_loader)))) if warmup_epochs else None)
    log(f"training {config['model']} on {config['data']} ({len(train_set)} training / {len(test_set)} held-out "
        f"images, {len(config['classes'])} classes) for {config['epochs']} epochs on {device}; outputs in {out}")
    trainer = Trainer(net, train_loader, test_loader, epochs=config["epochs"], optimizer=opt, schedule=sched,
                      device=device, out_dir=out, progress=progress, config=config, log=log,
                      batch_schedule=warm, is_main=is_main,
                      lr_factor=world if distributed and lr_scaling == "linear" else 1,
                      shared_metric=dist_training.rank0_value if distributed else None)
    if not distributed and new_dir:
        _make_run_dir(out)
    trainer.fit(resume=bool(resume))
    last = trainer.history[-1] if trainer.history else None
    if last is None or "val_top1_error" not in last:
        ev = evaluate(trainer.model, test_loader, device)
    else:
        ev = {"top1": last["val_top1_error"], "top5": last["val_top5_error"], "loss": last["val_loss"]}
    log(f"outputs in {out}/: checkpoint.npz, model.npz, log.csv, curves.png, filters.png, config.json")
    log(format_errors(ev["top1"], ev["top5"]))
    return trainer, ev


VIEWS = {5: "five (no mirrors for digits)", 10: "ten"}


def run_evaluation(path, data=None, ten_crop=False, device="cpu", batch_size=64, workers=0, log=print):
    """``minidl eval``: top-1/top-5 error of a run's weights on its held-out split (or ``data``)."""
    from minidl.data import DataLoader, presets
    config = read_config(path)
    if config is None:
        raise CheckpointError(f"{path}: no config.json beside it — give a run folder written by `minidl train` "
                              f"or a checkpoint inside one")
    if data is not None and data != config["data"]:
        other = presets.data_config(data, config["image_size"], config["in_channels"])["classes"]
        if list(other) != list(config["classes"]):
            raise ValueError(f"--data {data}: its classes ({', '.join(map(str, other[:10]))}"
                             f"{', …' if len(other) > 10 else ''}) are not the {len(config['classes'])} classes "
                             f"{config['model']} was trained on ({', '.join(map(str, config['classes'][:10]))}"
                             f"{', …' if len(config['classes']) > 10 else ''})")
        config = dict(config, data=data)
    net = build_model(config)
    state = read_weights(path)
    try:
        net.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: the weights do not fit {config['model']}: {e}") from None
    net.to(device)
    split = "tencrop" if ten_crop else "test"
    test_set = presets.build_dataset(config, False, presets.make_transform(config, split))
    loader = DataLoader(test_set, max(1, batch_size // 10) if ten_crop else batch_size, num_workers=workers)
    ev = evaluate(net, loader, device)
    log(f"{config['model']} on the held-out split of {config['data']} ({ev['n']} images"
        f"{f', {VIEWS[presets.tencrop_views(config)]} crops each' if ten_crop else ''}): loss {ev['loss']:.4f}")
    log(format_errors(ev["top1"], ev["top5"]))
    return ev


def run_classify(images, model=None, weights=None, device="cpu", topk=5, log=print):
    """``minidl classify``: the top-k classes with probabilities for each image file.

    ``weights`` from ``minidl train`` (a run folder or a file in one) carry their config (model,
    classes, preprocessing). Other weights (e.g. converted from torchvision) need ``model``; they
    get the ImageNet preprocessing (resize 256/224, centre crop, ImageNet mean/std) and, with 1000
    classes, the ImageNet class names.
    """
    from PIL import Image
    from minidl.data import presets
    from minidl.metrics import predict
    if topk < 1:
        raise ValueError(f"--top must be at least 1, got {topk}")
    if weights is None:
        raise ValueError("classify: give --weights (a run folder from `minidl train` or an .npz of weights)")
    config = read_config(weights)
    state = read_weights(weights)
    if config is None or (model is not None and model != config["model"]):
        if model is None:
            raise ValueError(f"classify: {weights} has no config.json beside it; name the model with --model")
        k = _num_classes(state)
        channels, size = model_input(model)
        if model == "tiny_alexnet":
            raise ValueError("classify: tiny_alexnet weights need the config.json of their run folder")
        config = {"model": model, "num_classes": k, "kind": "folder", "image_size": size, "in_channels": channels,
                  "mean": list(presets.T.IMAGENET_MEAN), "std": list(presets.T.IMAGENET_STD), "pad": 0,
                  "classes": imagenet_class_names() if k == 1000 else None}
    classes = config.get("classes")
    if classes is None and config.get("num_classes") == 1000:
        log("(minidl does not bundle the ImageNet class names; classes are shown by their index 0-999, "
            "in torchvision's order)")
    if "classes" in config and classes is None:
        config = {k: v for k, v in config.items() if k != "classes"}
    net = build_model(config)
    try:
        net.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{weights}: the weights do not fit {config['model']}: {e}") from None
    net.to(device).eval()
    results = []
    for path in images:
        try:
            from minidl.data.folder import load_rgb
            img = Image.open(path) if config.get("kind") == "digits" else load_rgb(path)
            x = presets.prepare_image(config, img)
        except Exception as e:
            raise ValueError(f"classify: cannot read image {path} ({type(e).__name__}: {e})") from None
        probs = predict(net, x[None], device)[0]
        top = np.argsort(-probs, kind="stable")[:topk]
        log(path)
        for rank, c in enumerate(top, 1):
            name = classes[c] if classes else f"class {c}"
            log(f"  {rank}. {100 * probs[c]:5.1f}%  {name} ({c})")
        results.append([(int(c), float(probs[c])) for c in top])
    return results


def _num_classes(state):
    """Classes of a classifier state dict: rows of its last 2-D weight (the final fully connected layer)."""
    last = [v for k, v in state.items() if k.endswith("weight") and np.ndim(v) == 2]
    if not last:
        raise ValueError("classify: cannot tell the number of classes (no fully connected layer in the weights)")
    return int(np.shape(last[-1])[0])


def imagenet_class_names():
    """The 1000 ILSVRC-2012 class names in torchvision's order, or None if minidl does not ship them."""
    try:
        from minidl.imagenet_classes import IMAGENET_CLASSES
    except ImportError:
        return None
    return list(IMAGENET_CLASSES)
