"""minidl's seeded generators: manual_seed, get_state/set_state."""
import numpy as np

import minidl as md
from minidl import random


def test_manual_seed_repeats_draws():
    md.manual_seed(11)
    a = random.generator().random(5)
    md.manual_seed(11)
    b = random.generator().random(5)
    np.testing.assert_array_equal(a, b)
    md.manual_seed(12)
    assert not np.array_equal(a, random.generator().random(5))


def test_generator_is_numpy_generator_by_default():
    assert isinstance(random.generator(), np.random.Generator)
    assert random.generator(np) is random.generator()


def test_get_set_state_resumes_the_stream():
    md.manual_seed(3)
    random.generator().random(7)
    state = random.get_state()
    expected = random.generator().random(4)
    random.generator().random(100)
    random.set_state(state)
    np.testing.assert_array_equal(random.generator().random(4), expected)
    assert state["seed"] == 3


def test_state_is_a_snapshot_not_a_live_view():
    md.manual_seed(0)
    state = random.get_state()
    random.generator().random(3)
    assert random.get_state() != state


def test_fold_in_gives_each_rank_its_own_stream_and_keeps_rank_0():
    from minidl import random as mr
    try:
        draws = {}
        for stream in (0, 1, 2, 1):
            mr.manual_seed(5)
            mr.fold_in(stream)
            draws.setdefault(stream, []).append(mr.generator().random(4))
        np.testing.assert_array_equal(draws[1][0], draws[1][1])       # deterministic per stream
        assert not np.allclose(draws[0][0], draws[1][0])              # ranks differ
        assert not np.allclose(draws[1][0], draws[2][0])
        mr.manual_seed(5)
        np.testing.assert_array_equal(mr.generator().random(4), draws[0][0])  # stream 0 = a single process

        # resume: the saved state is folded in again, so rank 1 continues its own stream deterministically
        mr.manual_seed(5)
        saved = mr.get_state()
        mr.fold_in(1)
        a = mr.generator().random(3)
        mr.set_state(saved)
        np.testing.assert_array_equal(mr.generator().random(3), a)
    finally:
        mr.fold_in(0)
        mr.manual_seed(0)
