"""DataLoader: batch layout, coverage of every sample once per epoch, determinism per seed."""
import numpy as np
import pytest

from minidl.data import DataLoader, Digits, transforms as T
from minidl.data.digits import split_indices


class Numbers:
    """Sample i is a (2, 3, 3) array filled with i, plus a random-crop offset so augmentation shows."""

    def __init__(self, n, transform=None):
        self.n, self.transform = n, transform

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = np.full((2, 3, 3), i, dtype=np.float64)
        return (self.transform(x) if self.transform else x), i % 7


@pytest.mark.parametrize("workers", [0, 3])
@pytest.mark.parametrize("shuffle,drop_last", [(False, False), (True, False), (True, True)])
def test_covers_each_sample_once(workers, shuffle, drop_last):
    loader = DataLoader(Numbers(23), batch_size=5, shuffle=shuffle, drop_last=drop_last, num_workers=workers, seed=0)
    seen = []
    for x, y in loader:
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.flags.c_contiguous
        assert x.shape[1:] == (2, 3, 3) and len(y) == len(x) and len(x) <= 5
        np.testing.assert_array_equal(y, x[:, 0, 0, 0].astype(np.int64) % 7)
        seen.extend(x[:, 0, 0, 0].astype(int).tolist())
    assert len(loader) == (4 if drop_last else 5)
    if drop_last:
        assert len(seen) == 20 and len(set(seen)) == 20
    else:
        assert sorted(seen) == list(range(23))
    assert (seen != sorted(seen)) == shuffle


def test_deterministic_per_seed_and_independent_of_workers():
    ds = Numbers(40, transform=T.Compose([T.RandomCrop(2, padding=1), T.RandomHorizontalFlip()]))

    def run(seed, workers):
        loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers, seed=seed)
        return [np.concatenate([x.ravel() for x, _ in loader]) for _ in range(2)]  # two epochs

    a, b, c = run(5, 0), run(5, 4), run(6, 0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], a[1])          # a new order and new augmentation each epoch
    assert not np.array_equal(a[0], c[0])


def test_state_dict_resumes_the_epoch():
    ds = Numbers(30)
    l1 = DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    for _ in range(2):
        list(l1)
    third = [y for _, y in l1]
    l2 = DataLoader(ds, batch_size=4, shuffle=True, seed=99)
    l2.load_state_dict({"seed": 2, "epoch": 2})
    for u, v in zip(third, (y for _, y in l2)):
        np.testing.assert_array_equal(u, v)


def test_breaking_out_of_a_threaded_epoch():
    loader = DataLoader(Numbers(50), batch_size=2, num_workers=2, seed=0)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    assert sum(len(y) for _, y in loader) == 50


def test_digits_split():
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.data.shape[1:] == (1, 32, 32) and train.data.dtype == np.float32
    assert 0 <= train.data.min() and train.data.max() <= 1
    assert np.bincount(test.targets).min() >= 35          # stratified: every class in the test set
    tr, te = split_indices(np.repeat(np.arange(10), 20), 0.2, seed=0)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == 200
    np.testing.assert_array_equal(Digits(train=False).targets, test.targets)  # a fixed split
    x, y = Digits(train=False, channels=3)[0]
    assert x.shape == (3, 32, 32) and np.array_equal(x[0], x[2]) and 0 <= y < 10
