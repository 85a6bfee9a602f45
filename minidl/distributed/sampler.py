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
        pad = self.total_size - self.n
        if pad:
            order = np.concatenate([order, np.resize(order, pad)]) if self.n else order
        return order

    def indices(self):
        return self.epoch_order()[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, sd):
        self.seed, self.epoch = int(sd["seed"]), int(sd["epoch"])
