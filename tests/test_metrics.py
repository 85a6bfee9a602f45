"""Top-k error and ten-crop evaluation."""
import numpy as np
import pytest

import minidl as md
from minidl import nn
from minidl.data import DataLoader
from minidl.metrics import evaluate, format_errors, predict, topk_correct, topk_error


def test_topk_error_by_hand():
    scores = np.array([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3],   # ranking 3 1 5 2 0 4
                       [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],   # ranking 0 5 4 3 2 1
                       [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])  # ranking 5 4 3 2 1 0
    targets = np.array([3, 1, 0])
    assert topk_correct(scores, targets, (1, 2, 5, 6)) == {1: 1, 2: 1, 5: 1, 6: 3}
    assert topk_error(scores, targets, 1) == pytest.approx(2 / 3)
    assert topk_error(scores, targets, (1, 5)) == pytest.approx({1: 2 / 3, 5: 2 / 3})
    assert topk_error(scores[:, :3], [1, 1, 2], 5) == 0.0     # k above the class count: all correct
    assert topk_error(md.tensor(scores), md.tensor(targets), 1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="scores must be"):
        topk_error(scores, [1, 2], 1)


def test_format():
    assert format_errors(0.0345, 0.0012) == "top-1 error 3.5%  top-5 error 0.1%"


class MeanColour(nn.Module):
    """Logits = a fixed linear map of each image's per-channel means (deterministic, no parameters)."""

    def __init__(self):
        super().__init__()
        self.w = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0], [-1.0, 0.0, 1.0], [0.5, 0.5, 0.5]], np.float32)

    def forward(self, x):
        m = x.mean(axis=(2, 3))
        return m @ md.tensor(self.w.T)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_ten_crop_prediction_averages_softmax():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 10, 3, 5, 5)).astype(np.float32)
    model = MeanColour()
    probs = predict(model, x)
    views = _softmax(x.mean(axis=(3, 4)) @ model.w.T)          # (2, 10, 4)
    np.testing.assert_allclose(probs, views.mean(axis=1), rtol=1e-5)
    assert not np.allclose(probs, _softmax(views.mean(axis=1)))  # averaging softmax, not logits


class Batches:
    def __init__(self, n):
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((n, 10, 3, 4, 4)).astype(np.float32)
        self.y = rng.integers(0, 4, n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_evaluate_ten_crop_loader():
    ds = Batches(13)
    model = MeanColour()
    ev = evaluate(model, DataLoader(ds, 4))
    probs = predict(model, ds.x)
    assert ev["n"] == 13
    assert ev["top1"] == pytest.approx(topk_error(probs, ds.y, 1))
    assert ev["top5"] == 0.0
    assert ev["loss"] == pytest.approx(-np.log(probs[np.arange(13), ds.y]).mean(), rel=1e-6)


def test_predict_evaluate_and_topk_take_tensors_and_numpy_ints():
    # a Tensor batch (or Tensor labels) used to fail inside np.asarray with "setting an array element
    # with a sequence"; a NumPy integer k was taken for a tuple of ks
    md.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = np.random.default_rng(0).standard_normal((5, 1, 2, 2)).astype(np.float32), np.array([0, 1, 2, 1, 0])
    np.testing.assert_allclose(predict(model, md.tensor(x)), predict(model, x))
    assert evaluate(model, [(md.tensor(x), md.tensor(y))], ks=(1, 2)) == evaluate(model, [(x, y)], ks=(1, 2))
    assert topk_error(predict(model, x), y, k=np.int64(2)) == topk_error(predict(model, x), y, k=2)
