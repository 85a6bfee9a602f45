"""The training loop: overfitting a small set, bit-exact resume, NaN/explosion stop, Ctrl-C, checkpoints, outputs."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

import minidl as md
from minidl import checkpoint, models, nn, optim, random, train
from minidl import functional as F
from minidl.data import DataLoader, Digits, Subset, transforms as T
from minidl.metrics import evaluate


def digits(n, transform=None):
    ds = Digits(train=True, transform=transform)
    return Subset(ds, np.arange(n))


def small_net(dropout=0.5):
    return models.tiny_alexnet(10, 1, width=(8, 16), hidden=64, dropout=dropout)


def test_overfits_64_digits():
    random.manual_seed(0)
    ds = digits(64, T.Normalize([0.3], [0.3]))
    model = small_net(dropout=0.0)
    opt = optim.SGD(model.parameters(), 0.02, momentum=0.9)
    trainer = train.Trainer(model, DataLoader(ds, 16, shuffle=True, seed=0), epochs=8, optimizer=opt,
                            schedule=optim.StepLR(opt, 5, 0.1), progress=False, log=lambda *a: None)
    history = trainer.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 5
    ev = evaluate(model, DataLoader(ds, 64), ks=(1,))
    assert ev["top1"] == 0.0


class Interrupt(Exception):
    pass


class StopAtStep:
    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, loss):
        if trainer.step == self.step:
            raise Interrupt()


def _run(out, seed_for_init, resume=False, callbacks=()):
    random.manual_seed(seed_for_init)
    model = small_net(dropout=0.5)           # dropout: the global RNG state matters
    aug = T.Compose([T.RandomCrop(32, padding=2), T.Normalize([0.3], [0.3])])  # the loader's RNG matters
    loader = DataLoader(digits(96, aug), 32, shuffle=True)   # seed drawn from minidl's generator
    opt = optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=5e-4)
    sched = optim.StepLR(opt, step_size=2, gamma=0.1)
    trainer = train.Trainer(model, loader, DataLoader(Subset(Digits(train=False), np.arange(40)), 40), epochs=3,
                            optimizer=opt, schedule=sched, out_dir=out, progress=False, callbacks=callbacks,
                            log=lambda *a: None)
    trainer.fit(resume=resume)
    return trainer


def test_resume_equals_uninterrupted_bit_exactly(tmp_path):
    full = _run(tmp_path / "full", seed_for_init=1)
    with pytest.raises(Interrupt):
        _run(tmp_path / "cut", seed_for_init=1, callbacks=[StopAtStep(5)])  # in epoch 2 of 3 (3 steps each)
    meta = train.read_checkpoint(tmp_path / "cut" / "checkpoint.npz")[2]
    assert meta["epoch"] == 1 and meta["step"] == 3
    resumed = _run(tmp_path / "cut", seed_for_init=123, resume=True)   # other init: everything must come back
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert resumed.optimizer.lr == full.optimizer.lr == pytest.approx(0.005)
    assert resumed.step == full.step == 9
    # and the state really matters: another seed gives other weights
    other = _run(tmp_path / "other", seed_for_init=2)
    assert not np.array_equal(other.model.state_dict()["features.0.weight"], a["features.0.weight"])


class NaNAfter(nn.Module):
    """Wraps a model; from the n-th training forward on its logits are NaN."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x):
        y = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return y * float("nan")
        return y


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    random.manual_seed(0)
    model = NaNAfter(small_net(), n=6)
    trainer = train.Trainer(model, DataLoader(digits(64), 16, shuffle=True, seed=0), epochs=3,
                            out_dir=tmp_path, progress=False, log=lambda *a: None)
    with pytest.raises(train.TrainingDiverged, match=r"loss is nan at step 6 \(epoch 2, batch 2\)") as info:
        trainer.fit()
    assert info.value.step == 6 and "checkpoint.npz" in str(info.value)
    state, _, meta = train.read_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 1
    assert all(np.isfinite(v).all() for v in state.values())
    with open(tmp_path / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    random.manual_seed(0)
    model = small_net()
    trainer = train.Trainer(model, DataLoader(digits(32), 16, seed=0), epochs=1, out_dir=tmp_path,
                            progress=False, log=lambda *a: None, save_filters=False)
    trainer.fit()
    path = tmp_path / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(train.CheckpointError, match=r"cannot read checkpoint .*checkpoint\.npz.*corrupt"):
        train.read_checkpoint(path)
    with pytest.raises(train.CheckpointError, match="checkpoint.npz"):
        trainer.fit(resume=True)
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(train.CheckpointError, match="checkpoint.npz"):
        train.read_checkpoint(path)
    with pytest.raises(train.CheckpointError, match="does not exist"):
        train.read_checkpoint(tmp_path / "nope.npz")
    # a checkpoint of another architecture
    other = train.Trainer(models.tiny_alexnet(10, 1, width=(4, 8), hidden=8), DataLoader(digits(16), 16, seed=0),
                          epochs=1, out_dir=tmp_path / "o", progress=False, log=lambda *a: None, save_filters=False)
    other.fit()
    with pytest.raises(train.CheckpointError, match="does not fit"):
        trainer.load_checkpoint(tmp_path / "o" / "checkpoint.npz")


def test_run_outputs(tmp_path):
    random.manual_seed(0)
    model = small_net()
    trainer = train.Trainer(model, DataLoader(digits(32), 16, seed=0), DataLoader(digits(16), 16), epochs=2,
                            out_dir=tmp_path, progress=True, log=lambda *a: None)
    trainer.fit()
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for col in ("train_loss", "val_top1_error", "val_top5_error", "lr"):
        assert all(r[col] != "" for r in rows)
    with Image.open(tmp_path / "curves.png") as curves:
        assert curves.size == (900, 380) and len(np.unique(np.asarray(curves.convert("RGB")).reshape(-1, 3),
                                                           axis=0)) > 4  # drawn
    with Image.open(tmp_path / "filters.png") as filters:
        assert min(filters.size) >= 320  # enlarged from the raw filter grid so the picture is legible
    loaded = small_net().load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.state_dict()["features.0.weight"], model.state_dict()["features.0.weight"])
    assert not any(n.startswith(".tmp-") for n in os.listdir(tmp_path))   # no temp files left behind


class WithAux(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return (self.a(x), self.b(x), self.c(x)) if self.training else self.a(x)


def test_auxiliary_losses_weighted_0_3():
    random.manual_seed(0)
    m = WithAux()
    x, y = md.tensor(np.random.default_rng(0).random((5, 4), dtype=np.float32)), np.array([0, 1, 2, 1, 0])
    loss, logits = train.compute_loss(m(x), y)
    expected = (F.cross_entropy(m.a(x), y).item() + 0.3 * F.cross_entropy(m.b(x), y).item()
                + 0.3 * F.cross_entropy(m.c(x), y).item())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logits.shape == (5, 3)
    loss.backward()
    assert m.b.weight.grad is not None and m.c.weight.grad is not None


def test_after_backward_hook_and_is_main(tmp_path):
    random.manual_seed(0)
    seen = []

    class NotMain(train.Replica):
        is_main = False

        def after_backward(self, trainer):
            seen.append(all(p.grad is not None for p in trainer.model.parameters()))

    trainer = train.Trainer(small_net(), DataLoader(digits(32), 16, seed=0), epochs=1, out_dir=tmp_path / "r",
                            replica=NotMain(), progress=False)
    trainer.fit()
    assert seen == [True, True]
    assert not (tmp_path / "r").exists()    # only the main process writes files


def test_run_files_are_readable_as_the_umask_allows(tmp_path):
    # the temp file of an atomic write is created 0600; the renamed file gets the usual mode
    # (0666 & ~umask) so that a run folder on a shared file system can be read by others
    mask = os.umask(0o022)
    try:
        checkpoint.atomic_write(tmp_path / "x.csv", lambda f: f.write(b"1"))
    finally:
        os.umask(mask)
    assert (os.stat(tmp_path / "x.csv").st_mode & 0o777) == 0o644


def test_epoch_schedule_steps_with_the_shared_metric():
    """Distributed runs pass rank 0's held-out error to every rank's schedule (shared_metric)."""
    md.manual_seed(0)
    net = small_net(dropout=0.0)
    opt = optim.SGD(net.parameters(), 0.01)
    sched = optim.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    seen = []

    class Shared(train.Replica):
        def shared_metric(self, value):
            seen.append(value)
            return 0.5  # the same "rank 0" error every epoch: no improvement after the first

    trainer = train.Trainer(net, DataLoader(digits(16), 8), DataLoader(digits(8), 8), epochs=3, optimizer=opt,
                            schedule=sched, progress=False, log=lambda *a: None, replica=Shared())
    trainer.fit()
    assert len(seen) == 3 and all(0.0 <= v <= 1.0 for v in seen)   # the local errors went in
    assert opt.lr == pytest.approx(0.01 * 0.5 ** 2)                # plateau at the shared value: two drops


class Explode(nn.Module):
    """Wraps a model; from the n-th training forward on its logits are scaled up 1e4x (finite)."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x):
        y = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return y * 1e4
        return y


def test_a_finite_exploding_loss_is_divergence_too(tmp_path):
    random.manual_seed(0)
    trainer = train.Trainer(Explode(small_net(dropout=0.0), n=5), DataLoader(digits(64), 16, seed=0), epochs=3,
                            out_dir=tmp_path, progress=False, log=lambda *a: None)
    with pytest.raises(train.TrainingDiverged, match=r"at step 5 \(epoch 2, batch 1\), over 10x the loss of "
                                                     r"guessing \(ln 10 classes\)") as info:
        trainer.fit()
    assert np.isfinite(float(str(info.value).split()[2]))      # the loss itself was a number
    assert train.read_checkpoint(tmp_path / "checkpoint.npz")[2]["epoch"] == 1


class CtrlC:
    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, loss):
        if trainer.step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_says_where_and_keeps_the_checkpoint(tmp_path):
    random.manual_seed(0)
    trainer = train.Trainer(small_net(), DataLoader(digits(48), 16, seed=0), epochs=3, out_dir=tmp_path,
                            progress=False, log=lambda *a: None, callbacks=[CtrlC(5)])
    with pytest.raises(train.TrainingInterrupted) as info:
        trainer.fit()
    e = info.value
    assert (e.epoch, e.step, e.finished) == (2, 5, 1) and e.checkpoint == str(tmp_path / "checkpoint.npz")
    assert train.read_checkpoint(e.checkpoint)[2]["epoch"] == 1
    assert not (tmp_path / "model.npz").exists()
    # the same Ctrl-C in the first epoch: nothing to resume from
    random.manual_seed(0)
    first = train.Trainer(small_net(), DataLoader(digits(48), 16, seed=0), epochs=3, out_dir=tmp_path / "b",
                          progress=False, log=lambda *a: None, callbacks=[CtrlC(2)])
    with pytest.raises(train.TrainingInterrupted) as info:
        first.fit()
    assert info.value.checkpoint is None and info.value.finished == 0


def test_progress_lines_without_a_terminal():
    random.manual_seed(0)
    lines = []
    trainer = train.Trainer(small_net(), DataLoader(digits(48), 16, seed=0), epochs=1, progress="lines",
                            progress_seconds=0.0, log=lines.append)
    trainer.fit()
    batches = [ln for ln in lines if "batch" in ln]
    assert [ln.split()[3] for ln in batches] == ["1/3", "2/3", "3/3"]
    assert all("loss" in ln and "train error" in ln for ln in batches)


def test_options_group_the_settings():
    opts = train.TrainOptions(epochs=2, progress=False)
    t = train.Trainer(small_net(), DataLoader(digits(16), 16), options=opts, out_dir="x")
    assert t.epochs == 2 and t.out_dir == "x" and t.progress is False and opts.out_dir is None
    with pytest.raises(TypeError):
        train.Trainer(small_net(), DataLoader(digits(16), 16), no_such_option=1)


def test_at_chance():
    assert train.at_chance(0.9, 10, 400) and train.at_chance(0.87, 10, 400)
    assert not train.at_chance(0.5, 10, 400) and not train.at_chance(0.2, 2, 100)
