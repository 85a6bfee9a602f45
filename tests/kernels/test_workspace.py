"""The conv scratch arena: bounded, shared by every conv call and algorithm, honest about its contents."""
import numpy as np

import minidl as md
from minidl import functional as F
from minidl.kernels import workspace


def test_parts_do_not_overlap_and_are_aligned():
    workspace.release()
    (a, b, c), _ = workspace.arena(np, [((3, 5), np.float32), ((7,), np.float64), ((2, 2), np.float32)])
    a[...], b[...], c[...] = 1, 2, 3
    assert (a == 1).all() and (b == 2).all() and (c == 3).all()
    assert all(v.ctypes.data % 64 == 0 and v.flags.c_contiguous for v in (a, b, c))
    assert (a.dtype, b.dtype, c.shape) == (np.float32, np.float64, (2, 2))


def test_one_arena_is_reused_and_grows_only_when_asked_for_more():
    workspace.release()
    assert workspace.nbytes() == 0
    (big,), _ = workspace.arena(np, [((1000,), np.float32)])
    size = workspace.nbytes()
    (small, other), _ = workspace.arena(np, [((10,), np.float32), ((10,), np.float64)])
    assert workspace.nbytes() == size and np.shares_memory(small, big)
    workspace.arena(np, [((5000,), np.float32)])
    assert workspace.nbytes() >= 5000 * 4
    workspace.release()
    assert workspace.nbytes() == 0


def test_intact_only_for_the_expected_writer_of_the_previous_call():
    workspace.release()
    _, intact = workspace.arena(np, [((4,), np.float32)], writer="conv 1")
    assert not intact
    _, intact = workspace.arena(np, [((4,), np.float32)], expect="conv 1")
    assert intact
    # that call named no writer: the contents are unknown now, even to the same label
    _, intact = workspace.arena(np, [((4,), np.float32)], expect="conv 1")
    assert not intact
    workspace.arena(np, [((4,), np.float32)], writer="conv 1")
    workspace.arena(np, [((4,), np.float32)], writer="conv 2")
    assert not workspace.arena(np, [((4,), np.float32)], expect="conv 1")[1]


def test_chunks_respect_the_bound_and_take_at_least_one_sample(monkeypatch):
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 100)
    assert workspace.chunks(5, 40) == [(0, 2), (2, 4), (4, 5)]
    assert workspace.chunks(3, 1000) == [(0, 1), (1, 2), (2, 3)]
    assert workspace.chunks(0, 10) == []


def test_a_training_step_keeps_at_most_the_bound_between_calls(monkeypatch):
    """Whatever the layers and algorithms, the arena left after a step is within the bound."""
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 64 * 1024)
    workspace.release()
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((8, 3, 12, 12)).astype(np.float32))
    ws = [md.tensor(rng.standard_normal(s).astype(np.float32) * 0.1, requires_grad=True)
          for s in [(16, 3, 5, 5), (16, 16, 3, 3), (16, 16, 3, 3)]]
    h = F.relu(F.conv2d(x, ws[0], padding=2))
    h = F.relu(F.conv2d(h, ws[1], padding=1, algorithm="im2col"))
    h = F.conv2d(h, ws[2], padding=1, algorithm="winograd")
    h.sum().backward()
    per_sample = max(3 * 25 + 16, 16 * 9 + 16) * 144 * 4   # the largest one-sample chunk of these convs
    assert 0 < workspace.nbytes() <= max(64 * 1024, 36 * (2 * 16 + 16) * 9 * 4, per_sample) + 64
