"""The training loop any model can use: ``Trainer`` and what ``minidl train`` builds a run from.

    from minidl import models, train
    model = models.tiny_alexnet(num_classes=10, in_channels=1)
    trainer = train.Trainer(model, train_loader, test_loader, epochs=5, out_dir="runs/demo")
    history = trainer.fit()                 # or trainer.fit(resume=True) after an interruption

One epoch: for every batch, forward, cross-entropy (plus 0.3 x each auxiliary loss when a model
such as GoogLeNet returns ``(logits, aux1, aux2)`` in training), backward, the replica's
``after_backward`` hook, SGD step. Then the held-out split is evaluated (top-1/top-5 error), the
epoch schedule steps, and — on the main process only — the run folder is updated atomically
(minidl.checkpoint): checkpoint.npz, log.csv, curves.png; after the last epoch model.npz and
filters.png (drawn with matplotlib, minidl.visualize).

A NaN or Inf loss, or one over ``divergence_factor`` times the loss of guessing uniformly (ln of
the number of classes), stops the run with ``TrainingDiverged`` naming the step; Ctrl-C raises
``TrainingInterrupted``. Either way the checkpoint of the last finished epoch stays untouched.
Resuming restores every state the next epoch depends on, so on the CPU an interrupted and resumed
run ends with the same weights, bit for bit, as one that ran straight through.
"""
import dataclasses
import glob
import math
import os
import sys
import time

import numpy as np

from minidl import backend, nn, optim, random
from minidl import functional as F
from minidl.autograd import Tensor
from minidl.checkpoint import (CHECKPOINT, CheckpointError, read_checkpoint,  # noqa: F401  (train.read_checkpoint)
                               save_checkpoint, save_weights, write_config, write_log)
from minidl.metrics import evaluate, format_errors, topk_correct
from minidl.models.tiny_alexnet import TinyAlexNet, tiny_alexnet  # noqa: F401  (its home before models/)


class TrainingDiverged(RuntimeError):
    """The loss became NaN, Inf or exploded; ``step`` is the global step (1-based) where it happened."""

    def __init__(self, message, step=None, epoch=None):
        super().__init__(message)
        self.step, self.epoch = step, epoch


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: ``epoch`` (1-based) was running at ``step``; ``checkpoint`` is the
    intact checkpoint of the last finished epoch (``finished`` of them), or None."""

    def __init__(self, epoch, step, finished, checkpoint):
        super().__init__(f"interrupted in epoch {epoch} (step {step})")
        self.epoch, self.step, self.finished, self.checkpoint = epoch, step, finished, checkpoint


@dataclasses.dataclass
class TrainOptions:
    """How a Trainer runs, apart from model, data and optimisation.

    progress: None = a tqdm bar on a terminal, plain lines (after the first batch, then every
    ``progress_seconds``) otherwise (a log file, Jupyter's ``!minidl train``); "bar", "lines", or
    False (nothing). ``config`` is written as the run's config.json.
    """
    epochs: int = 10
    device: str = "cpu"
    out_dir: str = None
    progress: object = None
    progress_seconds: float = 5.0
    log: object = None
    config: dict = None
    save_filters: bool = True
    aux_weight: float = 0.3
    divergence_factor: float = 10.0


class Replica:
    """What a Trainer asks the process it runs in; one process alone is this default.

    ``minidl.distributed.training.DataParallelReplica`` is the data-parallel one: ``is_main`` on
    rank 0 alone (it alone prints and writes files), ``lr_factor`` the linear-scaling factor of the
    learning rate (recorded in checkpoints, so a run resumed on another number of ranks rescales),
    ``shared_metric`` rank 0's held-out error (every rank steps its epoch schedule with one value),
    ``after_backward`` between backward and the optimiser step.
    """
    is_main = True
    lr_factor = 1
    world_size = 1

    def after_backward(self, trainer):
        pass

    def shared_metric(self, value):
        return value


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


def first_conv(model):
    """The first Conv2d of a model (in registration order), or None."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None


def save_first_filters(model, path):
    """filters.png: the first conv layer's filters (minidl.visualize.plot_filters); False without a conv."""
    conv = first_conv(model)
    if conv is None:
        return False
    from minidl.visualize.filters import plot_filters
    plot_filters(conv.weight, path, title="first conv layer")
    return True


class Trainer:
    """Train ``model`` on ``train_loader``, evaluating on ``val_loader`` after every epoch.

    optimizer: default SGD(lr 0.01, momentum 0.9, weight decay 5e-4). ``schedule`` is stepped once
    per epoch with the held-out top-1 error (``optim.StepLR``, ``optim.ReduceLROnPlateau``…);
    ``batch_schedule`` once per step (``optim.WarmupLR``). ``options``: a ``TrainOptions``, or its
    fields as keywords (``epochs=5, out_dir="runs/x"``). ``replica``: a ``Replica`` (distributed
    runs pass theirs). ``callbacks`` get ``on_step(trainer, loss)`` and ``on_epoch_end(trainer,
    row)`` if they define them.
    """

    def __init__(self, model, train_loader, val_loader=None, optimizer=None, *, schedule=None, batch_schedule=None,
                 callbacks=(), replica=None, options=None, **option_fields):
        opts = dataclasses.replace(options or TrainOptions(), **option_fields)
        self.options, self.replica = opts, replica or Replica()
        self.device = backend.check_device(opts.device)
        self.model = model.to(self.device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs = int(opts.epochs)
        self.optimizer = optimizer or optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        self.schedule, self.batch_schedule = schedule, batch_schedule
        self.out_dir = os.fspath(opts.out_dir) if opts.out_dir is not None else None
        self.is_main = self.replica.is_main
        self.callbacks = list(callbacks)
        self.config = dict(opts.config or {})
        self.log = opts.log if opts.log is not None else (print if self.is_main else (lambda *a, **k: None))
        self.progress = opts.progress
        if self.progress is None:
            self.progress = "bar" if sys.stderr.isatty() else "lines"
        elif self.progress is True:
            self.progress = "bar"
        self.epoch = 0      # epochs finished
        self.step = 0       # optimiser steps taken
        self.history = []
        self._loss_ceiling = None

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
                "lr_factor": self.replica.lr_factor}
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
        rescale = self.replica.lr_factor / meta.get("lr_factor", 1)
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
    def _check_loss(self, value, logits, epoch, batch):
        """TrainingDiverged for a NaN/Inf loss or one far above the loss of guessing (ln K)."""
        if self._loss_ceiling is None and math.isfinite(value):
            guess = math.log(max(2, logits.shape[-1]))
            self._loss_ceiling = self.options.divergence_factor * max(guess, value)
        if math.isfinite(value) and value <= self._loss_ceiling:
            return
        kept = (f"; the last good checkpoint (epoch {self.epoch}) is {self.checkpoint_path}"
                if self.checkpoint_path and os.path.isfile(self.checkpoint_path) else "")
        why = ("" if not math.isfinite(value) else
               f", over {self.options.divergence_factor:g}x the loss of guessing (ln {logits.shape[-1]} classes)")
        raise TrainingDiverged(f"loss is {value:.6g} at step {self.step} (epoch {epoch + 1}, batch {batch + 1}){why}: "
                               f"training diverged and stopped — try a lower learning rate{kept}",
                               step=self.step, epoch=epoch + 1)

    def train_epoch(self, epoch):
        """One pass over the training loader; returns the epoch's mean loss and running top-1 error."""
        self.model.train()
        self.train_loader.set_epoch(epoch)
        total_loss, wrong, seen = 0.0, 0, 0
        show = self.progress if self.is_main else False
        batches = self.train_loader
        if show == "bar":
            from tqdm import tqdm
            batches = tqdm(self.train_loader, total=len(self.train_loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                           leave=False, dynamic_ncols=True, file=sys.stderr)
        t0 = last_line = time.perf_counter()
        try:
            for batch, (x, y) in enumerate(batches):
                x = Tensor(backend.to_device(x, self.device))
                output = self.model(x)
                loss, logits = compute_loss(output, y, self.options.aux_weight)
                value = float(loss.item())
                self.step += 1
                self._check_loss(value, logits, epoch, batch)
                self.model.zero_grad()
                loss.backward()
                self.replica.after_backward(self)
                self.optimizer.step()
                if self.batch_schedule is not None:
                    self.batch_schedule.step()
                n = len(y)
                total_loss += value * n
                seen += n
                wrong += n - topk_correct(logits.data if backend.device_of(logits.data) == "cpu"
                                          else backend.as_numpy(logits.data), y, (1,))[1]
                if show == "bar":
                    batches.set_postfix(loss=f"{total_loss / seen:.4f}", err=f"{100 * wrong / seen:.1f}%",
                                        refresh=False)
                elif show == "lines" and (batch == 0 or
                                          time.perf_counter() - last_line >= self.options.progress_seconds):
                    last_line = time.perf_counter()
                    self.log(f"  epoch {epoch + 1}/{self.epochs}  batch {batch + 1}/{len(self.train_loader)}  "
                             f"loss {total_loss / seen:.4f}  train error {100 * wrong / seen:.1f}%  "
                             f"({last_line - t0:.0f} s)")
                for cb in self.callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(self, value)
        finally:
            if show == "bar":
                batches.close()
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
                write_config(self.path("config.json"), self.config)
        try:
            for epoch in range(self.epoch, self.epochs):
                self._fit_epoch(epoch)
            if self.is_main and self.out_dir:
                save_weights(self.path("model.npz"), self.model)
                if self.options.save_filters:
                    save_first_filters(self.model, self.path("filters.png"))
        except KeyboardInterrupt:
            ckpt = self.checkpoint_path if self.epoch and self.checkpoint_path else None
            raise TrainingInterrupted(min(self.epoch + 1, self.epochs), self.step, self.epoch, ckpt) from None
        return self.history

    def _fit_epoch(self, epoch):
        t0 = time.perf_counter()
        lr = self.optimizer.lr
        train_loss, train_err = self.train_epoch(epoch)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_top1_error": train_err, "lr": lr}
        if self.val_loader is not None:
            ev = evaluate(self.model, self.val_loader, self.device)
            row.update(val_loss=ev["loss"], val_top1_error=ev["top1"], val_top5_error=ev["top5"])
        if self.schedule is not None:
            self.schedule.step(self.replica.shared_metric(row.get("val_top1_error", train_err)))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if self.is_main and self.out_dir:  # written before the epoch counts, so Ctrl-C in here loses it cleanly
            self.epoch, self.history = epoch + 1, self.history + [row]
            try:
                self.save_checkpoint()
            except BaseException:
                self.epoch, self.history = epoch, self.history[:-1]
                raise
        else:
            self.epoch, self.history = epoch + 1, self.history + [row]
        if self.is_main:
            msg = f"epoch {epoch + 1}/{self.epochs}  loss {train_loss:.4f}  train error {100 * train_err:.1f}%"
            if "val_top1_error" in row:
                msg += f"  held-out {format_errors(row['val_top1_error'], row['val_top5_error'])}"
            self.log(msg + f"  lr {lr:.3g}  ({row['seconds']:.1f} s)")
            if self.out_dir:
                write_log(self.path("log.csv"), self.history)
                from minidl.visualize.plots import plot_curves
                plot_curves(self.history, self.path("curves.png"))
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self, row)


def fit(model, train_loader, val_loader=None, resume=False, **kwargs):
    """``Trainer(model, train_loader, val_loader, **kwargs).fit(resume)``; returns the Trainer."""
    trainer = Trainer(model, train_loader, val_loader, **kwargs)
    trainer.fit(resume)
    return trainer


# ---- what a run config means ---------------------------------------------------------------------
DEFAULTS = {"model": "tiny_alexnet", "data": "digits", "epochs": 4, "batch_size": 32, "lr": 0.03,
            "momentum": 0.9, "weight_decay": 5e-4, "seed": 0}


def build_model(config):
    """The model a run config names (any name in ``minidl.models.MODELS``; tiny_alexnet fits the data)."""
    from minidl import models
    name, k = config["model"], len(config["classes"]) if "classes" in config else config["num_classes"]
    if name == "tiny_alexnet":
        return models.tiny_alexnet(k, config["in_channels"], config["image_size"])
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


def at_chance(top1, classes, n):
    """True when a held-out top-1 error is no better than guessing among ``classes`` (within two
    standard errors of 1 - 1/classes over ``n`` images)."""
    p = 1.0 / classes
    return top1 >= 1 - p - 2 * math.sqrt(p * (1 - p) / max(n, 1))


def native_size(config, dataset):
    """The side of the data's own images (32 for digits/CIFAR; a folder's first image), or None."""
    if config.get("native_size"):
        return config["native_size"]
    ds = getattr(dataset, "dataset", dataset)
    samples = getattr(ds, "samples", None)
    if not samples:
        return None
    from PIL import Image
    try:
        with Image.open(samples[0][0]) as img:
            return min(img.size)
    except OSError:
        return None


def upscaling_note(config, net, n_images, native):
    """A line saying that small images are enlarged for this model, and roughly how long an epoch
    takes: 3x the forward multiply-adds (forward and backward) at this CPU's float32 matmul speed."""
    from minidl import models
    size = config["image_size"]
    madds = models.summary(net, (config["in_channels"], size, size)).total_madds
    a = np.ones((384, 384), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(4):
        a @ a
    rate = 4 * 384 ** 3 / max(time.perf_counter() - t0, 1e-9)  # multiply-adds per second
    seconds = 3 * madds * n_images / rate
    when = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return (f"note: {config['model']} takes {size}x{size} images: the {native}x{native} images of {config['data']} "
            f"are enlarged {size / native:.1f}x ({(size / native) ** 2:.0f}x the pixels); an epoch of {n_images} "
            f"images ({madds / 1e9:.2f} G multiply-adds each) needs at least ~{when} on this CPU")


def kernels_cache_is_cold():
    """True when Numba holds no up-to-date cached compilation of any of minidl's CPU kernels: the
    first run on this install (or after the kernels changed) compiles them, ~15 s. Looks where
    Numba keeps its cache: __pycache__ beside the sources, $NUMBA_CACHE_DIR, or the user-wide cache."""
    from minidl import kernels
    root = os.path.dirname(kernels.__file__)
    sources = [p for p in glob.glob(os.path.join(root, "**", "*.py"), recursive=True) if _caches(p)]
    places = [os.environ["NUMBA_CACHE_DIR"]] if os.environ.get("NUMBA_CACHE_DIR") else [
        root, os.path.join(os.path.expanduser("~"), ".cache", "numba")]
    for src in sources:
        stem = os.path.splitext(os.path.basename(src))[0]
        for place in places:
            for index in glob.glob(os.path.join(place, "**", f"{stem}.*.nbi"), recursive=True):
                if os.path.getmtime(index) >= os.path.getmtime(src):
                    return False
    return bool(sources)


def _caches(path):
    """True for a source that asks Numba to cache its compilations."""
    with open(path, encoding="utf-8") as f:
        return "cache=True" in f.read()
