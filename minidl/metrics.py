"""The ILSVRC metric: top-k error, and evaluation of a model over a loader (optionally ten-crop).

Top-k error is the fraction of images whose true class is not among the model's k highest
scores; ILSVRC ranked entries by top-5 error (AlexNet 2012: 15.3%), and reported top-1 beside it.
"""
import math

import numpy as np

from minidl import backend
from minidl.autograd import Tensor, no_grad


def _host(a):
    if isinstance(a, Tensor):
        a = a.data
    return backend.as_numpy(a)


def topk_correct(scores, targets, ks=(1, 5)):
    """For scores (N, K) and integer targets (N,): how many targets are in the top k, per k.

    k larger than the number of classes counts every sample as correct (as k = K would).
    """
    scores, targets = _host(scores), _host(targets).astype(np.int64).ravel()
    if scores.ndim != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"topk: scores must be (N, classes) with N = len(targets) = {targets.shape[0]}, "
                         f"got {scores.shape}")
    k_max = min(max(ks), scores.shape[1])
    # the k_max best classes per row, best first (argpartition then sort the small slice)
    part = np.argpartition(-scores, k_max - 1, axis=1)[:, :k_max]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    hit = top == targets[:, None]
    return {k: int(hit[:, :min(k, k_max)].any(axis=1).sum()) for k in ks}


def topk_error(scores, targets, k=1):
    """Top-k error in [0, 1] of scores (N, K) against targets (N,); ``k`` may be a tuple -> dict."""
    single = isinstance(k, (int, np.integer))
    ks = (int(k),) if single else tuple(k)
    n = len(_host(targets).ravel())
    if n == 0:
        raise ValueError("topk_error: no samples")
    correct = topk_correct(scores, targets, ks)
    errors = {kk: 1.0 - correct[kk] / n for kk in ks}
    return errors[int(k)] if single else errors


def format_errors(top1, top5):
    """The final line every run prints: ``top-1 error X.X%  top-5 error Y.Y%`` (errors as fractions)."""
    return f"top-1 error {100 * top1:.1f}%  top-5 error {100 * top5:.1f}%"


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict(model, x, device="cpu"):
    """Class probabilities (N, K) as a host array for a batch x (N, C, H, W), or, for ten-crop
    batches x (N, V, C, H, W), softmax averaged over the V views (the AlexNet test protocol)."""
    x = np.asarray(_host(x), dtype=np.float32)
    views = None
    if x.ndim == 5:
        n, views = x.shape[:2]
        x = x.reshape((n * views,) + x.shape[2:])
    with no_grad():
        out = model(Tensor(backend.to_device(x, device)))
    if isinstance(out, (tuple, list)):  # a model that returns auxiliary outputs: the first is the main one
        out = out[0]
    probs = _softmax(_host(out).astype(np.float64))
    if views is not None:
        probs = probs.reshape(n, views, -1).mean(axis=1)
    return probs


def evaluate(model, loader, device="cpu", ks=(1, 5)):
    """Top-k errors and mean cross-entropy of ``model`` (switched to eval mode, restored after)
    over every batch of ``loader``. Ten-crop batches (N, 10, C, H, W) are handled by ``predict``.

    Returns ``{"top1": e1, "top5": e5, "loss": mean -log p(true class), "n": samples}``.
    """
    was_training = getattr(model, "training", False)
    model.eval()
    correct = {k: 0 for k in ks}
    n, nll = 0, 0.0
    try:
        for x, y in loader:
            probs, y = predict(model, x, device), _host(y)
            c = topk_correct(probs, y, ks)
            for k in ks:
                correct[k] += c[k]
            nll += float(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12)).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the loader gave no samples")
    out = {f"top{k}": 1.0 - correct[k] / n for k in ks}
    out["loss"] = nll / n if math.isfinite(nll) else float("nan")
    out["n"] = n
    return out
