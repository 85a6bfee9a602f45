"""Part 7: the ILSVRC metric, the top-k error (AlexNet 2012: 15.3% top-5)."""
import numpy as np


def topk_error(scores, targets, k=5):
    """scores (N, classes), targets (N,) ints -> the fraction of rows whose target is not among the
    k highest scores (a float in [0, 1])."""
    top = np.argsort(-scores, axis=1)[:, :k]
    hit = (top == targets[:, None]).any(axis=1)
    return 1.0 - hit.mean()
