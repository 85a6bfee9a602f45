"""lessonlib's MINIDL_DEVICE switch: a clear error for a bad value, and the models go back to the CPU.

The GPU itself is exercised only where one is lent (MINIDL_DEVICE=cuda python -m lessons.build --full);
here the moves are recorded instead of made.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import minidl as md
from minidl import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
sys.path.insert(0, LESSONS)
import lessonlib  # noqa: E402


def _import_with(device):
    env = dict(os.environ, MINIDL_DEVICE=device,
               PYTHONPATH=os.pathsep.join(filter(None, [LESSONS, ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", "import lessonlib; print(lessonlib.DEVICE)"], env=env, cwd=LESSONS,
                          capture_output=True, text=True, timeout=120)


def test_default_and_explicit_cpu():
    for device in ("", "cpu"):
        p = _import_with(device)
        assert p.returncode == 0 and p.stdout.strip() == "cpu", p.stderr[-2000:]


def test_a_bad_device_names_the_variable():
    p = _import_with("tpu")
    assert p.returncode != 0
    assert "MINIDL_DEVICE='tpu'" in p.stderr and "expected \"cpu\" or \"cuda\"" in p.stderr


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is usable here")
def test_cuda_without_a_gpu_says_why():
    p = _import_with("cuda")
    assert p.returncode != 0
    assert "MINIDL_DEVICE='cuda'" in p.stderr and backend.gpu_unavailable_reason().split()[0] in p.stderr


@pytest.fixture
def recorded_moves(monkeypatch):
    """DEVICE = "cuda" with Module.to recording instead of moving (and batches left on the CPU)."""
    moves = []
    monkeypatch.setattr(lessonlib, "DEVICE", "cuda")
    monkeypatch.setattr(lessonlib, "batch", md.tensor)
    monkeypatch.setattr(md.nn.Module, "to", lambda self, device: moves.append(device) or self)
    return moves


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, n)


def test_a_training_loop_moves_its_model_once_and_back(recorded_moves):
    x, y = _data()
    net = lessonlib.conv_net(md.nn.ReLU, 1.0, 2, 4, 8, 1, 3)
    for step, *_ in lessonlib.sgd_steps(net, x, y, 0.01, 4, batch_size=16):
        lessonlib.error_of(net, x, y)            # nested: must not move the net back mid-loop
        assert recorded_moves == ["cuda"]
    assert recorded_moves == ["cuda", "cpu"]


def test_a_loop_stopped_early_still_brings_the_model_back(recorded_moves):
    x, y = _data()
    net = lessonlib.conv_net(md.nn.ReLU, 1.0, 2, 4, 8, 1, 3)
    steps = lessonlib.sgd_steps(net, x, y, 0.01, 100, batch_size=16)
    next(steps)
    steps.close()
    assert recorded_moves == ["cuda", "cpu"]
    lessonlib.error_of(net, x, y)
    lessonlib.train(net, x, y, epochs=1, batch_size=16)
    assert recorded_moves == ["cuda", "cpu"] * 3


def test_on_the_cpu_nothing_moves(monkeypatch):
    moves = []
    monkeypatch.setattr(md.nn.Module, "to", lambda self, device: moves.append(device) or self)
    x, y = _data()
    net = lessonlib.conv_net(md.nn.ReLU, 1.0, 2, 4, 8, 1, 3)
    lessonlib.train(net, x, y, epochs=1, batch_size=16)
    assert moves == [] and lessonlib.DEVICE == "cpu"
