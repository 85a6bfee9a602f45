"""``DistributedSampler``: each rank's share of an epoch.

Every rank draws the same seeded permutation of the data set for the epoch (seed and epoch number
fix it, so no communication is needed), pads it by wrapping around to a multiple of the number of
ranks, and takes every world-th index starting at its rank. So each rank gets the same number of
samples (the ranks step together), and across ranks every sample appears once per epoch — plus at
most world-1 repeats from the padding.
"""
import math

import numpy as np


class DistributedSampler:
    """Indices of ``dataset`` (or a length) for rank ``rank`` of ``num_replicas``; call
    ``set_epoch(e)`` before each epoch for a new permutation."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0):
        from minidl import distributed as dist
        self.n = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        self.num_replicas = dist.world_size() if num_replicas is None else int(num_replicas)
        self.rank = dist.rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank {self.rank} is not in [0, {self.num_replicas})")
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0
        self.num_samples = math.ceil(self.n / self.num_replicas)  # per rank
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def epoch_order(self):
        """The whole epoch's order (same on every rank), padded by wrap-around to ``total_size``."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        return pad_to_multiple(order, self.num_replicas)

    def indices(self):
        return shard(self.epoch_order(), self.rank, self.num_replicas)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, sd):
        self.seed, self.epoch = int(sd["seed"]), int(sd["epoch"])


def pad_to_multiple(order, world):
    """``order`` extended by wrapping around to a multiple of ``world`` entries."""
    pad = -len(order) % world
    return np.concatenate([order, np.resize(order, pad)]) if pad and len(order) else np.asarray(order)


def shard(order, rank, world):
    """Rank ``rank``'s share of an epoch's ``order``: every world-th entry of the padded order."""
    return pad_to_multiple(np.asarray(order), world)[rank::world]


def shard_loader(loader, comm=None):
    """Make a ``minidl.data.DataLoader`` yield only this rank's share of every epoch (in place).

    The loader's seed is taken from rank 0 so that all ranks shuffle alike; each epoch's order is
    then padded and sharded as by ``DistributedSampler``. Batches keep the loader's batch size, so
    the job's batch is world x batch_size.
    """
    from minidl import distributed as dist
    comm = comm or dist.get_comm()
    rank, world = comm.Get_rank(), comm.Get_size()
    loader.seed = comm.bcast(loader.seed, root=0)
    full = loader.epoch_indices

    def epoch_indices(epoch):
        return shard(full(epoch), rank, world)

    loader.epoch_indices = epoch_indices
    return loader
