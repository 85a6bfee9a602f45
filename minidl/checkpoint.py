"""The files of a run folder: checkpoints, weights, config, log, and which run ``runs/latest`` names.

    checkpoint.npz   model, optimiser, schedules, epoch, step, RNG and loader states, history
    model.npz        the final weights (``Module.load`` reads it)
    config.json      how to rebuild model and data (``minidl eval``/``classify`` read it)
    log.csv          one row per finished epoch

Every file is written atomically (a temp file renamed into place) with the mode an ordinary new
file gets (0666 & ~umask), so an interrupted write never leaves half a file and a run folder on a
shared file system is readable as the umask allows. No pickle anywhere: arrays in .npz, the rest JSON.

``runs/latest`` is moved to a run only once it has finished an epoch (``point_latest``), so it never
names a folder that a failed, killed or interrupted run left holding only config.json.
"""
import csv
import io
import json
import os
import shutil
import tempfile
import time

import numpy as np

from minidl import backend

CHECKPOINT = "checkpoint.npz"
WEIGHTS = "model.npz"
CONFIG = "config.json"
FORMAT = "minidl-checkpoint"
RUNS = "runs"


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used (missing, truncated, corrupt, for another model)."""


def atomic_write(path, write):
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


# ---- checkpoints and weights ---------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, meta):
    """One .npz: ``model/<key>`` and ``optim/<i>/<name>`` arrays plus a JSON ``meta`` string
    (epoch, step, learning rate, schedule/RNG/loader states, history, config)."""
    arrays = {f"model/{k}": backend.as_numpy(v) for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    for i, st in osd["state"].items():
        for name, a in st.items():
            arrays[f"optim/{i}/{name}"] = backend.as_numpy(a)
    meta = dict(meta, format=FORMAT, version=1, optimizer={"lr": osd["lr"]})
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_weights(path, model):
    """``model``'s state dict as a plain .npz (what ``Module.load`` reads), written like every run file."""
    arrays = {k: backend.as_numpy(v) for k, v in model.state_dict().items()}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path):
    """``(model_state, optimizer_state, meta)`` from a checkpoint, or ``CheckpointError`` naming the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist{_usable_hint(os.path.dirname(path))}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:  # closed even if np.load fails
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
    """Model weights from a checkpoint, a run folder (its model.npz, else checkpoint.npz), or a
    plain ``Module.save`` .npz."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = weights_file(path)
        if found is None:
            raise CheckpointError(f"{path} holds no {WEIGHTS} or {CHECKPOINT}: its run stopped before it finished "
                                  f"an epoch{_usable_hint(path)}")
        path = found
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist{_usable_hint(os.path.dirname(path))}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:  # closed even if np.load fails
            keys = f.files
            if "meta" in keys:
                return read_checkpoint(path)[0]
            return {k: f[k] for k in keys}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot read weights {path}: the file is corrupt or not an .npz "
                              f"({type(e).__name__}: {e})") from None


def weights_file(folder):
    """The weights a run folder holds: model.npz, else checkpoint.npz, else None."""
    for name in (WEIGHTS, CHECKPOINT):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


# ---- config and log ------------------------------------------------------------------------------
def write_config(path, config):
    atomic_write(path, lambda f: f.write(json.dumps(config, indent=2).encode()))


def read_config(path):
    """The config.json of a run folder, or of the folder a checkpoint/weights file is in (None if absent)."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    p = os.path.join(folder, CONFIG)
    if not os.path.isfile(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {p}: {type(e).__name__}: {e}") from None


LOG_COLUMNS = ["epoch", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error", "lr",
               "seconds"]


def write_log(path, history):
    """The per-epoch log as CSV (rewritten whole each epoch, atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOG_COLUMNS)
    for row in history:
        w.writerow([_fmt(row.get(c)) for c in LOG_COLUMNS])
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# ---- run folders and runs/latest -----------------------------------------------------------------
def new_run_dir(runs=RUNS):
    """A fresh, not yet existing ``runs/<date-time>`` name."""
    out = os.path.join(runs, time.strftime("%Y%m%d-%H%M%S"))
    while os.path.exists(out):
        out += "_"
    return out


def point_latest(out):
    """Point ``latest`` beside ``out`` at it (a convenience: not every file system has symlinks)."""
    latest = os.path.join(os.path.dirname(os.path.abspath(out)), "latest")
    try:
        if os.path.islink(latest) or os.path.isfile(latest):
            os.remove(latest)
        os.symlink(os.path.basename(os.path.abspath(out)), latest)
    except OSError:
        pass


def latest_usable_run(runs=RUNS):
    """The run folder in ``runs`` whose checkpoint or weights were written last, or None."""
    best, when = None, -1.0
    try:
        names = os.listdir(runs)
    except OSError:
        return None
    for name in names:
        folder = os.path.join(runs, name)
        if name == "latest" or not os.path.isdir(folder):
            continue
        found = weights_file(folder)
        if found is not None and os.path.getmtime(found) > when:
            best, when = folder, os.path.getmtime(found)
    return best


def _usable_hint(folder):
    """'; the latest usable run is runs/X' for the folder's parent (or ./runs), or ''."""
    folder = os.path.abspath(folder or ".")
    for runs in dict.fromkeys((os.path.dirname(folder), os.path.abspath(RUNS))):
        best = latest_usable_run(runs)
        if best is not None and os.path.abspath(best) != folder:
            return f"; the latest usable run is {os.path.relpath(best)}"
    return "; no run here has finished an epoch yet (train one with `minidl train`)"


def missing_run(path):
    """The CheckpointError for a run folder or file that does not exist (e.g. runs/latest before any run)."""
    return CheckpointError(f"{path} does not exist{_usable_hint(os.path.dirname(os.path.abspath(path)))}")


class MarkLatest:
    """Callback: once an epoch is finished (its checkpoint written), runs/latest names this run."""

    def __init__(self, out):
        self.out, self.done = out, False

    def on_epoch_end(self, trainer, row):
        if not self.done and trainer.is_main:
            point_latest(self.out)
            self.done = True


def in_runs(out):
    """True for a folder directly inside ./runs (the folders runs/latest may name)."""
    return os.path.dirname(os.path.abspath(out)) == os.path.abspath(RUNS)


def resume_dir(out):
    """The folder ``--resume`` continues (``out`` or runs/latest's target), checked to hold a checkpoint."""
    if out is None:
        latest = os.path.join(RUNS, "latest")
        if not os.path.exists(latest):
            raise CheckpointError(f"--resume without --out: there is no {latest} (no run here has finished an "
                                  f"epoch); give --out RUN_DIR")
        out = os.path.relpath(os.path.realpath(latest))
    if not os.path.isdir(out):
        raise missing_run(out)
    if read_config(out) is None:
        raise CheckpointError(f"cannot resume {out}: it holds no config.json (not a run folder of `minidl train`)"
                              f"{_usable_hint(out)}")
    if not os.path.isfile(os.path.join(out, CHECKPOINT)):
        raise CheckpointError(f"cannot resume {out}: it holds no {CHECKPOINT} (its run stopped before it finished "
                              f"an epoch){_usable_hint(out)}")
    return out


def remove_unfinished(out):
    """Delete a run folder this invocation made that holds nothing but its config.json."""
    try:
        if os.path.isdir(out) and set(os.listdir(out)) <= {"config.json"}:
            shutil.rmtree(out)
            return True
    except OSError:
        pass
    return False
