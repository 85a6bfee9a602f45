"""lessons/pretrained.py: torchvision's AlexNet weights found in a cache, Fig. 2 on the photos, top-5 classes.

No real weights are needed: a torchvision-format state dict of random values, written with torch.save
where PyTorch would cache the real one, stands in for them, so every number can be recomputed here.
"""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
FILE = "alexnet-owt-7be5be79.pth"


def _lessonlib():
    sys.path.insert(0, LESSONS)
    try:
        import lessonlib
    finally:
        sys.path.remove(LESSONS)
    return lessonlib


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(TORCH_HOME, {key: array}): random He-scaled weights in torchvision's names and shapes, saved by torch."""
    torch = pytest.importorskip("torch")
    from minidl import models
    home = tmp_path_factory.mktemp("torch_home")
    rng = np.random.default_rng(0)
    state = {}
    for k, v in models.get_model("alexnet_torchvision").state_dict().items():
        # He scaling keeps the ReLU maps of all five layers alive, so the strongest units are not ties at 0
        std = np.sqrt(2.0 / np.prod(v.shape[1:])) if v.ndim > 1 else 0.01
        state[k] = rng.standard_normal(v.shape, dtype=np.float32) * np.float32(std)
    names = sorted(state)
    assert names == sorted(f"{p}.{i}.{w}" for p, idx in (("features", (0, 3, 6, 8, 10)), ("classifier", (1, 4, 6)))
                           for i in idx for w in ("weight", "bias"))
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(folder / FILE))
    return home, state


@pytest.fixture(scope="module")
def net(saved, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(saved[0]))
        mp.setenv("MINIDL_HOME", str(tmp_path_factory.mktemp("minidl_home")))
        return _lessonlib().pretrained_alexnet()


def test_pretrained_alexnet_loads_the_cached_torchvision_file(net, saved):
    assert net is not None and not net.training
    got = net.state_dict()
    assert sorted(got) == sorted(saved[1])
    for k, v in saved[1].items():
        assert np.array_equal(got[k], v), k


def test_pretrained_alexnet_finds_minidl_cache_too(saved, tmp_path, monkeypatch):
    folder = tmp_path / "minidl" / "checkpoints"
    folder.mkdir(parents=True)
    os.symlink(saved[0] / "hub" / "checkpoints" / FILE, folder / FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))
    monkeypatch.setenv("MINIDL_HOME", str(tmp_path / "minidl"))
    got = _lessonlib().pretrained_alexnet()
    assert got is not None and np.array_equal(got.state_dict()["features.10.weight"], saved[1]["features.10.weight"])


def test_absent_weights_give_none_and_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    monkeypatch.setenv("MINIDL_HOME", str(tmp_path / "m"))
    lessonlib = _lessonlib()
    assert lessonlib.pretrained_alexnet() is None
    msg = lessonlib.missing_weights_message()
    assert os.path.join(str(tmp_path / "t"), "hub", "checkpoints") in msg
    assert os.path.join(str(tmp_path / "m"), "checkpoints") in msg
    assert "minidl weights download alexnet_torchvision" in msg and FILE in msg


def test_photo_crops_are_the_normalised_squares():
    from minidl.data import transforms as T
    lessonlib = _lessonlib()
    raw, x, where = lessonlib.photo_crops(lessonlib.photos(), sides=(320, 192), step=64, size=224)
    # 427x640 photos: 2x6 squares of 320 and 4x8 of 192 on the 64-pixel grid, each photo
    assert raw.shape == x.shape == (88, 3, 224, 224) and len(where) == 88
    assert 0 <= raw.min() and raw.max() <= 1
    mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in (T.IMAGENET_MEAN, T.IMAGENET_STD))
    np.testing.assert_allclose(x, (raw - mean) / std, rtol=1e-5, atol=1e-6)
    assert {w[0] for w in where} == {0, 1} and {w[3] for w in where} == {320, 192}


def test_fig2_top9_and_projections_of_five_layers(net):
    from minidl import nn
    from minidl.autograd import Tensor, no_grad
    from minidl.visualize.patches import crop
    lessonlib = _lessonlib()
    raw, x, where = lessonlib.photo_crops(lessonlib.photos(), sides=(200,), step=200, size=224)
    assert len(x) == 12
    f2 = lessonlib.fig2(net, x, raw)
    assert [u.name for u in f2] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert [u.layer for u in f2] == [1, 4, 7, 9, 11]
    layers = list(net.features)
    for u, size in zip(f2, (11, 51, 99, 131, 163)):
        assert isinstance(layers[u.layer], nn.ReLU) and isinstance(layers[u.layer - 1], nn.Conv2d)
        assert u.field.size == size
        assert len(u.indices) == len(set(u.indices)) == 9
        assert len(u.patches) == len(u.projections) == len(u.deconv) == 9
        for j, b, p, q, r in zip(u.indices, u.boxes, u.patches, u.projections, u.deconv):
            assert p.shape == q.shape == (3, size, size)
            np.testing.assert_array_equal(p, crop(raw[j].astype(np.float64), b))
            assert r.pixels.shape == (3, 224, 224) and np.abs(q).max() > 0
            np.testing.assert_array_equal(q, crop(r.pixels, b))
        assert np.all(np.diff(u.scores) <= 0)
        # recomputed without fig2's bookkeeping: the layer's maps of every crop, straight from the net
        with no_grad():
            a = nn.Sequential(*layers[:u.layer + 1])(Tensor(x)).data
        assert u.channel == int(np.argmax(a.max(axis=(0, 2, 3))))
        per_crop = a[:, u.channel].reshape(len(x), -1).max(axis=1)
        np.testing.assert_allclose(u.scores, np.sort(per_crop)[::-1][:9], rtol=1e-4)
        for s, j, (h, w) in zip(u.scores, u.indices, u.positions):
            np.testing.assert_allclose(a[j, u.channel, h, w], s, rtol=1e-4)
            np.testing.assert_allclose(per_crop[j], s, rtol=1e-4)
        crops_grid, proj_grid = u.images()
        side = 3 * (size + 2) + 2         # 3x3 tiles with 2-pixel gaps
        assert crops_grid.mode == proj_grid.mode == "RGB" and crops_grid.size == proj_grid.size == (side, side)


def test_top5_names_and_probabilities(net):
    from minidl import runs
    from minidl.autograd import Tensor, no_grad
    from minidl.data import presets
    from minidl.imagenet_classes import IMAGENET_CLASSES
    lessonlib = _lessonlib()
    from pretrained import IMAGENET_TEST, as_pil     # importable once lessonlib has been (lessons/ beside it)
    photo = lessonlib.photos()[1]
    best = lessonlib.top5(net, photo)
    assert len(best) == 5 and len({name for _, name, _ in best}) == 5
    # the same input `minidl classify --model alexnet_torchvision --pretrained` would give the net
    x = presets.prepare_image(runs._imagenet_config("alexnet_torchvision", 1000), as_pil(photo))
    np.testing.assert_array_equal(IMAGENET_TEST(as_pil(photo)), x)
    with no_grad():
        logits = net(Tensor(x[None])).data[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:5]
    assert [c for c, _, _ in best] == order.tolist()
    assert [name for _, name, _ in best] == [IMAGENET_CLASSES[c] for c in order]
    np.testing.assert_allclose([p for _, _, p in best], probs[order], rtol=1e-5)
    assert all(a >= b for (_, _, a), (_, _, b) in zip(best, best[1:]))


def test_fig2_with_where_keeps_nine_distinct_places(net):
    from minidl import nn
    from minidl.autograd import Tensor, no_grad
    lessonlib = _lessonlib()
    from pretrained import overlap, photo_box
    assert overlap((0, 0, 10, 10), (5, 0, 10, 10)) == 0.5 and overlap((0, 0, 10, 10), (2, 2, 4, 4)) == 1.0
    assert overlap((0, 0, 10, 10), (10, 10, 5, 5)) == 0.0
    # overlapping crops (step 96, side 192): the plain top-9 would repeat places, the kept nine do not
    raw, x, where = lessonlib.photo_crops(lessonlib.photos(), sides=(192,), step=96, size=224)
    kept = lessonlib.fig2(net, x, raw, where, k=9)
    layers, size, skipped = list(net.features), x.shape[-1], 0
    for v in kept:
        assert len(v.indices) == 9 and np.all(np.diff(v.scores) <= 0)
        boxes = [(where[j][0], photo_box(b, where[j], size)) for j, b in zip(v.indices, v.boxes)]
        for a in range(9):
            for b in range(a):
                assert boxes[a][0] != boxes[b][0] or overlap(boxes[a][1], boxes[b][1]) <= 0.5
        with no_grad():
            maps = nn.Sequential(*layers[:v.layer + 1])(Tensor(x)).data[:, v.channel]
        flat = maps.reshape(len(x), -1)
        # every crop passed over (one scoring above the last one kept) overlaps a kept one in its photo
        for j in np.argsort(-flat.max(axis=1), kind="stable"):
            if flat[j].max() <= v.scores[-1]:
                break
            if int(j) not in v.indices:
                pos = np.unravel_index(int(flat[j].argmax()), maps.shape[1:])
                b = photo_box(v.field.box(*pos), where[j], size)
                assert any(w == where[j][0] and overlap(b, c) > 0.5 for w, c in boxes)
                skipped += 1
    assert skipped > 0, "no crop was passed over: the test no longer exercises the overlap rule"


def test_fig2_follows_the_channel_with_the_largest_maximum():
    """A net built to tell the rule apart from near misses: channel 0 of conv1 fires hard on one crop only
    (largest maximum), channel 1 moderately on every crop (largest mean and most crops)."""
    import types
    from minidl import nn
    lessonlib = _lessonlib()
    conv1, conv2 = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
    conv1.weight.data[...] = 0
    conv1.weight.data[0, 0] = 1.0              # channel 0: the red in a 3x3 window
    conv1.bias.data[...] = (0.0, 10.0)         # channel 1: 10 everywhere
    conv2.weight.data[...] = 0
    conv2.weight.data[1, 1, 1, 1] = 1.0        # layer 2, channel 1: copies layer 1's channel 1 (10 everywhere)
    conv2.bias.data[...] = (-1.0, 0.0)         # layer 2, channel 0: dead
    net = types.SimpleNamespace(features=nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.ReLU()))
    x = np.zeros((20, 3, 16, 16), dtype=np.float32)
    x[7, 0, 5:8, 9:12] = 10.0                  # one crop with a red square: 90 at its centre (6, 10)
    f2 = lessonlib.fig2(net, x)
    assert [u.layer for u in f2] == [1, 4]
    u = f2[0]
    assert u.channel == 0 and u.indices[0] == 7 and u.positions[0] == (6, 10) and u.scores[0] == pytest.approx(90.0)
    assert f2[1].channel == 1 and np.all(f2[1].scores == pytest.approx(10.0))
