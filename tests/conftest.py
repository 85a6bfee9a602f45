"""Shared test setup: the repository root on sys.path, and GPU tests skipped where no GPU is usable."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # tests also run from a plain checkout, before `pip install -e .`
    sys.path.insert(0, ROOT)

from minidl import backend  # noqa: E402


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    reason = backend.gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a usable GPU (an NVIDIA GPU and pip install -e '.[cuda12]'): {reason}")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture
def seeded():
    """minidl's generators reseeded to 0 before the test (and a NumPy generator for the data)."""
    from minidl import random
    random.manual_seed(0)
    return np.random.default_rng(0)
