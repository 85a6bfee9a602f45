"""The measurements the lesson notebooks state in their prose hold (fast settings, seeds 0..2).

The experiment functions live in lessons/lessonlib.py; the notebooks call them with these arguments.
They run in a child process with one thread per library, as tests/test_lessons.py runs the notebooks:
on a busy 2-core machine, spinning BLAS/Numba thread pools made these tiny steps ~5x slower.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def run_lessonlib(code):
    """Run ``code`` (which sets ``result``) in a fresh single-threaded interpreter; return ``result`` via JSON."""
    env = dict(os.environ, **{k: "1" for k in THREADS}, MINIDL_FAST="1",
               PYTHONPATH=os.pathsep.join(filter(None, [LESSONS, ROOT, os.environ.get("PYTHONPATH")])))
    script = "import json, numpy as np, lessonlib\n" + code + "\nprint('RESULT', json.dumps(result))\n"
    p = subprocess.run([sys.executable, "-c", script], env=env, cwd=LESSONS, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.split("RESULT ", 1)[1])


def test_degradation_and_the_residual_fix():
    """Lesson 08: plain 20 layers train much worse than plain 4; residual 20 trains about as well as residual 4."""
    final = run_lessonlib(
        "runs = lessonlib.degradation(depths=(4, 20), seeds=(0, 1, 2), steps=300, n=512, width=32, lr=0.01, every=20)\n"
        "result = {k: [lessonlib.final_error(c) for c in cs] for k, cs in runs.items()}")
    print({k: [round(100 * e, 1) for e in v] for k, v in final.items()})
    for p4, p20, r4, r20 in zip(final["plain-4"], final["plain-20"], final["residual-4"], final["residual-20"]):
        assert p20 > p4 + 0.10               # degradation, every seed
        assert r20 < p20 - 0.10              # shortcuts remove it
        assert r20 <= r4 + 0.02              # deep residual within 2 points of shallow residual
        assert p4 < 0.02 and r4 < 0.02


def test_relu_vs_tanh_measurement_as_stated():
    """Lesson 04 says: at these settings tanh reaches 2% training error in fewer steps than ReLU (median ratio < 1)."""
    speed = run_lessonlib(
        "s = lessonlib.relu_vs_tanh(lrs=(0.003, 0.01, 0.03), seeds=(0, 1, 2), depth=6, width=64, n=512, target=0.02)\n"
        "result = {f'{a} {lr}': v for (a, lr), v in s.items()}")
    for lr in (0.003, 0.01, 0.03):
        r, t = speed[f"ReLU {lr}"], speed[f"tanh {lr}"]
        assert all(r) and all(t), (lr, r, t)                             # both always reach the target
        assert sorted(b / a for a, b in zip(r, t))[1] < 1.0, (lr, r, t)  # median ratio tanh/ReLU


def test_dense_nets_shapes():
    sys.path.insert(0, LESSONS)
    try:
        import lessonlib
    finally:
        sys.path.remove(LESSONS)
    import minidl as md
    x, y = lessonlib.flat_digits(64)
    assert x.shape == (64, 256) and abs(float(x.mean())) < 1e-4
    for shortcut in (False, True):
        net = lessonlib.DenseNet(20, shortcut, width=8)
        assert sum(isinstance(m, md.nn.Linear) for m in net.modules()) == 20
        assert net(md.tensor(x[:4])).shape == (4, 10)
    with pytest.raises(ValueError):
        lessonlib.DenseNet(5, True)


def test_fixed_features_vs_learned_end_to_end():
    """Lesson 01: the two-stage net learned end to end beats the same net with a frozen hand-set edge bank
    (and frozen random filters) on held-out digits, for every seed, at the notebook's fast settings."""
    errors = run_lessonlib(
        "errors, _ = lessonlib.fixed_vs_learned(seeds=(0, 1, 2), n_train=1024, epochs=5)\n"
        "result = {k: [v for _, v in e] for k, e in errors.items()}")
    learned, handset, rand = (errors[k] for k in ("learned end to end", "fixed: hand-set edges + random stage",
                                                  "fixed: random filters"))
    print({k: [round(100 * v, 1) for v in e] for k, e in errors.items()})
    assert all(a < b for a, b in zip(learned, handset)), (learned, handset)
    assert all(a < b for a, b in zip(learned, rand)), (learned, rand)
    assert sum(handset) < sum(rand), (handset, rand)


def test_relu_gradient_shrinks_more_at_default_init():
    """Lesson 02: with the default (PyTorch-style) init, the ReLU MLP's first/last layer gradient ratio is below tanh's."""
    g = run_lessonlib("result = {a: lessonlib.layer_grad_norms(getattr(lessonlib.md.nn, a)) for a in ('ReLU', 'Tanh')}")
    ratio = {a: v[0] / v[-1] for a, v in g.items()}
    assert ratio["ReLU"] < ratio["Tanh"] < 1, ratio
