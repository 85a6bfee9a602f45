"""The measurements the lesson notebooks state in their prose hold (fast settings, seeds 0..2).

The experiment functions live in lessons/lessonlib.py; the notebooks call them with these arguments.
"""
import os
import sys
import time

import numpy as np
import pytest

import minidl as md

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lessons"))
lessonlib = pytest.importorskip("lessonlib")


def test_degradation_and_the_residual_fix():
    """Lesson 08: plain 20 layers train much worse than plain 4; residual 20 trains about as well as residual 4."""
    t0 = time.perf_counter()
    runs = lessonlib.degradation(depths=(4, 20), seeds=(0, 1, 2), steps=300, n=512, width=32, lr=0.01, every=20)
    final = {k: np.array([lessonlib.final_error(c) for c in cs]) for k, cs in runs.items()}
    print({k: np.round(100 * v, 1).tolist() for k, v in final.items()}, f"{time.perf_counter() - t0:.1f} s")
    assert (final["plain-20"] > final["plain-4"] + 0.10).all()          # degradation, every seed
    assert (final["residual-20"] < final["plain-20"] - 0.10).all()      # shortcuts remove it
    assert (final["residual-20"] <= final["residual-4"] + 0.02).all()   # deep residual within 2 points of shallow
    assert (final["residual-4"] < 0.02).all() and (final["plain-4"] < 0.02).all()


def test_relu_vs_tanh_measurement_as_stated():
    """Lesson 04 says: at these settings tanh reaches 2% training error in fewer steps than ReLU (median ratio < 1)."""
    lrs = (0.003, 0.01, 0.03)
    speed = lessonlib.relu_vs_tanh(lrs=lrs, seeds=(0, 1, 2), depth=6, width=64, n=512, target=0.02)
    for lr in lrs:
        r, t = speed[("ReLU", lr)], speed[("tanh", lr)]
        assert all(r) and all(t), (lr, r, t)                            # both always reach the target
        assert np.median(np.array(t) / np.array(r)) < 1.0, (lr, r, t)


def test_dense_nets_shapes_and_block_identity():
    x, y = lessonlib.flat_digits(64)
    assert x.shape == (64, 256) and abs(float(x.mean())) < 1e-4
    for shortcut in (False, True):
        net = lessonlib.DenseNet(20, shortcut, width=8)
        assert sum(isinstance(m, md.nn.Linear) for m in net.modules()) == 20
        assert net(md.tensor(x[:4])).shape == (4, 10)
    with pytest.raises(ValueError):
        lessonlib.DenseNet(5, True)
