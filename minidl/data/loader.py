"""DataLoader: batches of contiguous float32 arrays and int64 labels, optionally decoded by threads.

Order and augmentation are functions of (seed, epoch, sample index) only:
- the epoch's permutation comes from a generator seeded with (seed, epoch);
- while sample ``i`` is loaded, random transforms draw from a generator seeded with
  (seed, epoch, i) (see ``transforms.using_generator``).
So a given seed gives the same batches whatever ``num_workers`` is, and a run resumed at epoch
``e`` (``load_state_dict``) sees exactly the batches the uninterrupted run saw.

With ``num_workers > 0``, whole batches are loaded by a pool of threads and up to
``num_workers * prefetch`` batches are prepared ahead while the model computes. Threads (not
processes) suffice because Pillow releases the GIL while it decodes and resizes, and NumPy does
while it copies.
"""
import collections
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minidl import random
from minidl.data.folder import SkipSample
from minidl.data.transforms import ToArray, using_generator

_SHUFFLE, _SAMPLE = 0, 1


class DataLoader:
    """Iterate over ``dataset`` (anything with ``__len__`` and ``__getitem__`` returning
    ``(x, label)``) in batches ``(x (B, ...) float32, labels (B,) int64)``.

    Each pass over the loader is one epoch and covers every sample once (samples a data set
    reports as unreadable with ``SkipSample`` are left out). ``seed=None`` draws a seed from
    minidl's generator, so ``minidl.manual_seed`` fixes it too. ``set_epoch``/``state_dict``
    control which epoch the next pass is.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, num_workers=0, seed=None,
                 prefetch=2):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.num_workers, self.prefetch = int(num_workers), max(1, int(prefetch))
        self.seed = int(random.generator().integers(2 ** 62)) if seed is None else int(seed)
        self.epoch = 0

    # ---- order -----------------------------------------------------------------------------------
    def epoch_indices(self, epoch):
        """The sample indices of one epoch, in order (a distributed sampler would shard these)."""
        n = len(self.dataset)
        if self.shuffle:
            return np.random.default_rng([self.seed, _SHUFFLE, epoch]).permutation(n)
        return np.arange(n)

    def batch_indices(self, epoch):
        idx = self.epoch_indices(epoch)
        bs = self.batch_size
        stop = len(idx) - len(idx) % bs if self.drop_last else len(idx)
        return [idx[i:i + bs] for i in range(0, stop, bs)]

    def __len__(self):
        n = len(self.epoch_indices(self.epoch))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ---- state -----------------------------------------------------------------------------------
    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    # ---- loading ---------------------------------------------------------------------------------
    def _load_sample(self, i, epoch):
        with using_generator(np.random.default_rng([self.seed, _SAMPLE, epoch, int(i)])):
            return self.dataset[int(i)]

    def _load_batch(self, indices, epoch):
        xs, ys = [], []
        for i in indices:
            try:
                x, y = self._load_sample(i, epoch)
            except SkipSample:
                continue  # the data set has already reported it
            xs.append(x)
            ys.append(y)
        if not xs:
            return None
        return collate(xs, ys)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        batches = self.batch_indices(epoch)
        if self.num_workers == 0:
            for b in batches:
                out = self._load_batch(b, epoch)
                if out is not None:
                    yield out
            return
        pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="minidl-loader")
        pending = collections.deque()
        ahead = self.num_workers * self.prefetch
        it = iter(batches)
        try:
            for b in it:
                pending.append(pool.submit(self._load_batch, b, epoch))
                if len(pending) >= ahead:
                    break
            while pending:
                out = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(self._load_batch, nxt, epoch))
                if out is not None:
                    yield out
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, num_workers={self.num_workers}, seed={self.seed})")


def collate(xs, ys):
    """Stack samples into a contiguous float32 batch and an int64 label vector."""
    arrays = []
    for x in xs:
        if not isinstance(x, np.ndarray):
            if hasattr(x, "numpy") and not isinstance(x, list):
                x = x.numpy()
            else:
                x = ToArray()(x)  # Pillow images (or lists of them, from TenCrop)
        arrays.append(x)
    shape = arrays[0].shape
    for a in arrays:
        if a.shape != shape:
            raise ValueError(f"DataLoader: samples of one batch differ in shape ({shape} and {a.shape}); "
                             f"add a Resize/CenterCrop transform so every sample has one size")
    x = np.ascontiguousarray(np.stack(arrays), dtype=np.float32)
    y = np.asarray([int(v) for v in ys], dtype=np.int64)
    return x, y


class Subset:
    """The samples ``indices`` of ``dataset`` (a held-out split of one ImageFolder, say)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]

    def __repr__(self):
        return f"Subset({self.dataset!r}, {len(self)} samples)"
