"""The measurements the lesson notebooks state in their prose hold (the notebooks' fast settings and seeds).

The experiment functions live in lessons/lessonlib.py; the notebooks call them with these arguments.
They run in a child process with one thread per library, as tests/test_lessons.py runs the notebooks:
on a busy 2-core machine, spinning BLAS/Numba thread pools made these tiny steps ~5x slower.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def run_lessonlib(code):
    """Run ``code`` (which sets ``result``) in a fresh single-threaded interpreter; return ``result`` via JSON."""
    env = dict(os.environ, **{k: "1" for k in THREADS}, MINIDL_FAST="1",
               PYTHONPATH=os.pathsep.join(filter(None, [LESSONS, ROOT, os.environ.get("PYTHONPATH")])))
    script = "import json, numpy as np, lessonlib\n" + code + "\nprint('RESULT', json.dumps(result))\n"
    p = subprocess.run([sys.executable, "-c", script], env=env, cwd=LESSONS, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.split("RESULT ", 1)[1])


DIGITS16 = ("x, y, _, _ = lessonlib.digits(None, 1, size=16)\n"
            "x = lessonlib.standardise(x)\n")


def test_relu_vs_tanh_map_as_stated():
    """Lesson 04: on the 4-layer conv net, tanh reaches 10% training error first in most cells of the
    gain x lr map; ReLU fails at large gain x large lr, tanh never; at gain 1 each at its best lr tanh is not slower."""
    r = run_lessonlib(DIGITS16 +
                      "m = lessonlib.relu_tanh_map(x, y, (0.5, 1, 2, 4), (0.01, 0.03, 0.1), (0,), depth=4, width=16,"
                      " target=0.10, max_steps=150)\n"
                      "result = {f'{a} {g} {lr}': v[0] for (a, g, lr), v in m['steps'].items()}")
    cells = [(g, lr) for g in (0.5, 1, 2, 4) for lr in (0.01, 0.03, 0.1)]
    big = 151
    relu = {c: r[f"ReLU {c[0]} {c[1]}"] or big for c in cells}
    tanh = {c: r[f"tanh {c[0]} {c[1]}"] or big for c in cells}
    print(relu, tanh)
    assert sum(tanh[c] < relu[c] for c in cells) >= 8                  # "in most cells" (12)
    assert sum(relu[c] < tanh[c] for c in cells) <= 3
    assert all(tanh[c] < big for c in cells)                            # tanh always got there
    assert relu[(4, 0.1)] == big and relu[(2, 0.1)] == big and relu[(4, 0.03)] == big
    assert relu[(1, 0.01)] < big and relu[(1, 0.03)] < big              # ReLU trains at the fan-in init
    best_relu = min(relu[(1, lr)] for lr in (0.01, 0.03, 0.1))
    best_tanh = min(tanh[(1, lr)] for lr in (0.01, 0.03, 0.1))
    assert best_tanh <= best_relu                                       # no 6x here: ratio <= 1


def test_saturation_grows_with_gain():
    """Lesson 04: the share of saturated tanh units rises with the init gain (most of layer 1 at gain 4);
    ReLU's gradients grow by orders of magnitude with the gain while tanh's stay within a factor of a few."""
    r = run_lessonlib(DIGITS16 +
                      "s = lessonlib.saturation_and_gradients(x, y, (0.5, 1, 2, 4))\n"
                      "result = {f'{a} {g}': v for (a, g), v in s.items()}")
    sat = [r[f"tanh {g}"]["saturated"][0] for g in (0.5, 1, 2, 4)]
    assert sat == sorted(sat) and sat[0] < 0.05 and sat[-1] > 0.5, sat
    relu_g = [r[f"ReLU {g}"]["grad_norm"][0] for g in (0.5, 4)]
    tanh_g = [r[f"tanh {g}"]["grad_norm"][0] for g in (0.5, 1, 2, 4)]
    assert relu_g[1] > 100 * relu_g[0]
    assert max(tanh_g) < 5 * min(tanh_g)
    assert all(0.3 < v < 0.7 for v in r["ReLU 1"]["saturated"])     # a ReLU is off for about half its inputs


def test_input_dropout_as_stated():
    """Lesson 04 (slide 23): the MLP overfits 100 digits; input + hidden dropout lowers the held-out error a little
    (in most seeds, by less than 3 points)."""
    r = run_lessonlib(
        "x, y, xv, yv = lessonlib.digits(100, None, size=16)\n"
        "mu, sd = x.mean(), x.std()\n"
        "x, xv = ((x - mu) / sd).reshape(len(x), -1), ((xv - mu) / sd).reshape(len(xv), -1)\n"
        "result = lessonlib.dropout_experiment(x, y, xv, yv, seeds=(0, 1, 2), steps=600, lr=0.05, batch_size=50)")
    none, both = r["no dropout"], r["input 0.2 + hidden 0.5"]
    print(r)
    assert max(none["train"]) == 0 and min(none["val"]) > 0.05                # it overfits
    assert sum(b < a for a, b in zip(none["val"], both["val"])) >= 2
    assert 0 < np.mean(none["val"]) - np.mean(both["val"]) < 0.03


def test_aliasing_of_a_fixed_filter():
    """Lesson 05: a 45-degree Gabor of wavelength 5 on the temple photo: stride 4 folds back most of its
    output's energy, stride 2 almost none."""
    r = run_lessonlib("g = lessonlib.photos(gray=True)[0]\n"
                      "resp = lessonlib.strided_responses(g, lessonlib.gabor(11, 5.0, np.pi / 4), (1, 2, 4))\n"
                      "result = [list(resp[s].shape) for s in (1, 2, 4)] + "
                      "[lessonlib.aliased_share(resp[1], s) for s in (2, 4)]")
    assert r[:3] == [[417, 630], [209, 315], [105, 158]]
    assert r[3] < 0.05 and r[4] > 0.5, r


def test_photo_patches_are_disjoint_and_labelled():
    sys.path.insert(0, LESSONS)
    try:
        import lessonlib
    finally:
        sys.path.remove(LESSONS)
    x, y = lessonlib.photo_patches(64, 32, seed=0, gray=False, downscale=2, cols=(0, 0.7), where=True)
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) <= {0, 1, 2, 3} and (y[::2] < 2).all() and (y[1::2] >= 2).all()   # photos alternate
    assert (x.std(axis=(1, 2, 3)) >= 0.08).all()
    net = lessonlib.conv_net(__import__("minidl").nn.Tanh, 1.0, depth=6, width=4, side=16, classes=10)
    assert sum(type(m).__name__ == "Conv2d" for m in net) == 5
    with pytest.raises(ValueError):
        lessonlib.conv_net(None, depth=1)
    with pytest.raises(ValueError):
        lessonlib.SmallResNet(5, True)


PATCHES = ("x, y = lessonlib.photo_patches(1024, 32, seed=0, gray=False, downscale=2, cols=(0, 0.7), where=True)\n"
           "xv, yv = lessonlib.photo_patches(256, 32, seed=1, gray=False, downscale=2, cols=(0.8, 1.0), where=True)\n"
           "m, s = x.mean(axis=(0, 2, 3), keepdims=True), x.std()\n"
           "x, xv = (x - m) / s, (xv - m) / s\n")


def test_zf_first_layers_as_stated():
    """Lesson 05: on photo patches, with one head, neither first layer has dead filters, the 7x7/2 filters end
    less distinctive than the 11x11/4 ones (and start so), both fit the training set and are trained out (the
    last tenth of the steps brings under 5% of the loss's fall), and no decisive held-out gap."""
    r = run_lessonlib(PATCHES +
                      "z = lessonlib.zf_comparison(x, y, xv, yv, seeds=(0, 1), steps=500, lr=0.01, width=16, decay=(0.6, 0.85))\n"
                      "result = {k: {q: v[q] for q in ('train_error', 'val_error', 'dead', 'distinct', 'distinct0')}"
                      " for k, v in z.items()}\n"
                      "for k, v in z.items(): result[k]['share'] = [lessonlib.last_tenth_share(l) for l in v['loss']]")
    print(r)
    big, small = r["11x11 stride 4"], r["7x7 stride 2"]
    assert big["dead"] == [0, 0] and small["dead"] == [0, 0]
    assert all(a > b for a, b in zip(big["distinct"], small["distinct"]))
    assert all(a > b for a, b in zip(big["distinct0"], small["distinct0"]))
    assert max(big["train_error"] + small["train_error"]) < 0.15
    assert max(big["share"] + small["share"]) < 0.05
    # no decisive gap: the notebook says the held-out comparison decides nothing at this scale
    assert abs(np.mean(big["val_error"]) - np.mean(small["val_error"])) < 0.15
    assert max(big["val_error"] + small["val_error"]) < 0.5            # well below chance (75%)


def test_plain_vs_residual_conv_nets_as_stated():
    """Lesson 08: the 18-layer plain conv net has higher training and held-out error than the 6-layer one in every
    seed; with shortcuts the 18-layer net is far better than plain, and ahead of the 6-layer residual net."""
    r = run_lessonlib(
        "x, y, xv, yv = lessonlib.digits(1024, 256, size=12)\n"
        "mu, sd = x.mean(), x.std()\n"
        "x, xv = (x - mu) / sd, (xv - mu) / sd\n"
        "runs = lessonlib.plain_vs_residual(x, y, xv, yv, depths=(6, 18), seeds=(0, 1), steps=150, lr=0.02,"
        " batch_size=32, width=8, every=25, n_eval=128)\n"
        "result = {k: {w: [float(np.mean(c[-2:])) for c in v[w]] for w in ('train', 'val')} for k, v in runs.items()}")
    print(r)
    for which in ("train", "val"):
        p6, p18, r6, r18 = (r[k][which] for k in ("plain-6", "plain-18", "residual-6", "residual-18"))
        assert all(b > a + 0.08 for a, b in zip(p6, p18)), (which, p6, p18)      # degradation, every seed
        assert all(b < a - 0.2 for a, b in zip(p18, r18)), (which, p18, r18)     # the shortcuts fix it
        assert all(b < a for a, b in zip(r6, r18)), (which, r6, r18)            # deep residual even ahead


def test_resnet_costs_as_tabled():
    """Lesson 08's table: parameters of ResNet-18/34 and a bottleneck costing about a 64-channel basic block."""
    r = run_lessonlib(
        "from minidl import models\n"
        "from minidl.models.resnet import BasicBlock, Bottleneck\n"
        "result = [models.summary(models.resnet18(), (3, 224, 224)).total_params,\n"
        "          models.summary(models.resnet34(), (3, 224, 224)).total_madds,\n"
        "          models.summary(BasicBlock(64, 64), (64, 56, 56)).total_madds,\n"
        "          models.summary(Bottleneck(256, 64), (256, 56, 56)).total_madds]")
    assert r[0] == 11_689_512
    assert abs(r[1] / 1e9 - 3.6) < 0.1
    assert r[2] == 2 * 64 * 64 * 9 * 56 * 56 and r[3] == (256 * 64 + 64 * 64 * 9 + 64 * 256) * 56 * 56


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
