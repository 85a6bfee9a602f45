"""`mpiexec -n 2 minidl train --distributed`: rank 0 writes the run; its checkpoint resumes on 2 ranks
and on 1 rank. (That a resumed run equals an uninterrupted one bit for bit was checked by hand on
2 ranks with --schedule none; it is the Trainer's property and tested there for one process.)"""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minidl import distributed as dist

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, "-m", "minidl.cli", "train", "--batch-size", "64", "--no-progress", "--seed", "3", "--schedule", "none"]


def train(ranks, *args):
    if ranks == 1:
        proc = subprocess.run(TRAIN + list(args), capture_output=True, text=True, cwd=ROOT, timeout=120)
    else:
        proc = dist.run_ranks(ranks, TRAIN + ["--distributed"] + list(args), timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(folder):
    with open(os.path.join(folder, "log.csv")) as f:
        return list(csv.DictReader(f))


def weights(folder):
    with np.load(os.path.join(folder, "model.npz")) as f:
        return {k: f[k] for k in f.files}


def test_distributed_run_and_resume_on_two_and_one_rank(tmp_path):
    part, one = str(tmp_path / "part"), str(tmp_path / "one")
    out = train(2, "--epochs", "1", "--out", part, "--warmup-epochs", "0.5")
    assert out.stdout.count("training tiny_alexnet") == 1  # rank 0 alone prints
    assert "on cpu on 2 ranks (data parallel: 64 images per rank per step, lr x2)" in out.stdout
    assert out.stdout.count("top-1 error") == 2          # the epoch line and the final line
    assert sorted(os.listdir(part)) == ["checkpoint.npz", "config.json", "curves.png", "filters.png",
                                        "log.csv", "model.npz"]
    shutil.copytree(part, one)
    first = weights(part)
    resumed = train(2, "--epochs", "2", "--out", part, "--resume", "--warmup-epochs", "0.5")
    assert "resumed from" in resumed.stdout and "after epoch 1" in resumed.stdout
    r2 = rows(part)
    assert len(r2) == 2 and r2[0] == rows(one)[0]        # epoch 1 from the checkpoint, epoch 2 trained
    train(1, "--epochs", "2", "--out", one, "--resume")   # the same checkpoint, now on one process
    r1 = rows(one)
    assert len(r1) == 2 and r1[0] == r2[0]
    # linear scaling: the 2-rank run's lr was doubled; resumed on 1 rank it is the 1-process lr again
    assert float(r1[1]["lr"]) == pytest.approx(float(r2[1]["lr"]) / 2, rel=1e-12)
    b, c = weights(part), weights(one)
    assert not all(np.array_equal(first[k], b[k]) for k in b)  # epoch 2 did train
    assert not all(np.array_equal(c[k], b[k]) for k in b)      # 1 rank: other batches, other weights


def test_rank_error_ends_the_job(tmp_path):
    # a bad option value fails on every rank inside run_training; the job must end, not hang
    proc = dist.run_ranks(2, TRAIN + ["--distributed", "--data", str(tmp_path / "missing"), "--out",
                                      str(tmp_path / "r")], timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert "minidl train:" in proc.stderr


def test_mpiexec_without_distributed_says_to_add_it(tmp_path):
    # two plain runs would race for one runs/<date-time> folder (a FileExistsError traceback)
    proc = dist.run_ranks(2, TRAIN + ["--epochs", "1"], timeout=60, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert proc.returncode != 0
    assert proc.stderr.count("add it (mpiexec -n 2 minidl train --distributed ...)") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "FileExistsError" not in proc.stderr
    assert not (tmp_path / "runs").exists()
