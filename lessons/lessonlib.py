"""Helpers shared by the lesson notebooks: fast mode, a small data set, a short training loop, display.

MINIDL_FAST=1 (set by the test suite) shrinks every experiment so that a notebook runs in seconds
on two CPU cores; without it the notebooks run their fuller versions.
"""
import os
import time

import numpy as np

import minidl as md
from minidl import functional as F, optim

FAST = os.environ.get("MINIDL_FAST", "0") not in ("", "0", "false", "False")


def pick(fast, full):
    """``fast`` in fast mode, else ``full``."""
    return fast if FAST else full


def digits(n_train=None, n_val=None, size=32, seed=0):
    """(x_train, y_train, x_val, y_val) from minidl's embedded digits, float32 (N, 1, size, size)."""
    from minidl.data import Digits
    tr, va = Digits(train=True, size=size), Digits(train=False, size=size)
    rng = np.random.default_rng(seed)
    i = rng.permutation(len(tr))[:n_train] if n_train else np.arange(len(tr))
    j = rng.permutation(len(va))[:n_val] if n_val else np.arange(len(va))
    return tr.data[i], tr.targets[i], va.data[j], va.targets[j]


def error_of(model, x, y, batch_size=256):
    """Top-1 error of ``model`` (eval mode, restored after) on arrays x, y."""
    was = model.training
    model.eval()
    wrong = 0
    with md.no_grad():
        for s in range(0, len(x), batch_size):
            out = model(md.tensor(x[s:s + batch_size]))
            out = out[0] if isinstance(out, tuple) else out
            wrong += int((out.numpy().argmax(axis=1) != y[s:s + batch_size]).sum())
    model.train(was)
    return wrong / len(x)


def train(model, x, y, epochs=1, lr=0.05, batch_size=32, momentum=0.9, weight_decay=0.0, x_val=None, y_val=None,
          seed=0, loss_fn=None):
    """Plain SGD on arrays; returns a history dict: per-step 'loss', per-epoch 'train_error', 'val_error', 'seconds'.

    loss_fn(output, y) -> scalar Tensor (default: cross-entropy of the output, or of its first element).
    """
    opt = optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    hist = {"loss": [], "train_error": [], "val_error": [], "seconds": 0.0}
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        for s in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            out = model(md.tensor(x[idx]))
            if loss_fn is not None:
                loss = loss_fn(out, y[idx])
            else:
                loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y[idx])
            model.zero_grad()
            loss.backward()
            opt.step()
            hist["loss"].append(loss.item())
        hist["train_error"].append(error_of(model, x, y))
        if x_val is not None:
            hist["val_error"].append(error_of(model, x_val, y_val))
    hist["seconds"] = time.perf_counter() - t0
    return hist


def smooth(values, k=5):
    """Running mean over k steps (for readable per-step loss curves)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def show(*images):
    """Display PIL images inline in Jupyter (and do nothing harmful outside it)."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return
    for im in images:
        display(im)
