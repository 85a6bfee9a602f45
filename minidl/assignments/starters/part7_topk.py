"""Part 7: the ILSVRC metric, the top-k error (AlexNet 2012: 15.3% top-5).
Check: ``minidl assignments check DIR topk_error``.
"""
import numpy as np


def topk_error(scores, targets, k=5):
    """scores (N, classes), targets (N,) ints -> the fraction of rows whose target is not among the
    k highest scores (a float in [0, 1])."""
    raise NotImplementedError("topk_error: the k best classes of each row (np.argsort of -scores), then the "
                              "fraction of rows missing their target")
