"""Lesson 01 solution: the ILSVRC top-k error."""
import numpy as np


def topk_error(scores, targets, k=5):
    """Fraction of rows of scores (N, classes) whose target is not among the k highest scores."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    top = np.argsort(-scores, axis=1)[:, :k]            # the k best classes of every image
    hit = (top == targets[:, None]).any(axis=1)
    return 1.0 - hit.mean()
