"""DistributedSampler: equal shares, every sample once per epoch, new order each epoch."""
from collections import Counter

import pytest

from minidl.distributed import DistributedSampler


@pytest.mark.parametrize("n,world", [(10, 2), (23, 2), (7, 3), (5, 4), (1, 2), (16, 1)])
def test_shards_cover_every_sample_once(n, world):
    for epoch in range(3):
        parts = []
        for rank in range(world):
            s = DistributedSampler(n, num_replicas=world, rank=rank, seed=7)
            s.set_epoch(epoch)
            parts.append(list(s))
            assert len(parts[-1]) == len(s) == -(-n // world)      # equal counts: ceil(n / world)
        counts = Counter(i for p in parts for i in p)
        assert set(counts) == set(range(n))                        # nobody missed
        extra = sum(counts.values()) - n
        assert extra == (-n) % world                               # only the wrap-around padding repeats
        assert all(c == 1 for c in counts.values()) or extra > 0


def test_epochs_differ_and_seed_repeats():
    a = DistributedSampler(50, num_replicas=2, rank=0, seed=1)
    b = DistributedSampler(50, num_replicas=2, rank=0, seed=1)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and list(b) == first
    assert list(DistributedSampler(50, num_replicas=2, rank=0, shuffle=False)) == list(range(0, 50, 2))


def test_bad_rank():
    with pytest.raises(ValueError, match="rank 2"):
        DistributedSampler(10, num_replicas=2, rank=2)


@pytest.mark.mpi
def test_two_ranks_cover_the_epoch(mpirun):
    run = mpirun("sampler")
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    for epoch, parts in r["parts"].items():
        assert len(parts[0]) == len(parts[1]) == r["per_rank"] == 12
        assert sorted(set(parts[0] + parts[1])) == list(range(23))   # 23 samples, 1 padded repeat
    assert r["parts"]["0"] != r["parts"]["1"]
