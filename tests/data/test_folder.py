"""ImageFolder and CIFAR10 on tiny data sets written in a temp dir."""
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image

from minidl.data import CIFAR10, CorruptImageWarning, DataLoader, ImageFolder, SkipSample, transforms as T


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(tmp_path / "dog" / "gray.jpg")
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    return tmp_path


def test_layout_classes_and_grayscale(folder):
    ds = ImageFolder(folder)
    assert ds.classes == ["cat", "dog"]
    assert len(ds) == 8  # 6 PNGs, the grayscale JPEG and the broken one; the .txt is ignored
    assert sorted(np.bincount(ds.targets).tolist()) == [4, 4]
    gray = [i for i, (p, _) in enumerate(ds.samples) if p.endswith("gray.jpg")][0]
    img, label = ds[gray]
    assert img.mode == "RGB" and img.size == (16, 16) and label == 1
    a = np.asarray(img)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])


def test_corrupt_file_reported_once_and_skipped(folder):
    ds = ImageFolder(folder, transform=T.Compose([T.Resize((12, 12)), T.ToArray()]))
    loader = DataLoader(ds, batch_size=3, shuffle=True, seed=0, num_workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs: the warning comes once
            xs, ys = zip(*loader)
            assert sum(len(y) for y in ys) == 7
            assert all(x.shape[1:] == (3, 12, 12) and x.dtype == np.float32 for x in xs)
    msgs = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(msgs) == 1 and "broken.jpg" in msgs[0] and "cannot decode" in msgs[0]
    assert list(ds.bad_files) == [str(folder / "cat" / "broken.jpg")]
    broken = [i for i, (p, _) in enumerate(ds.samples) if p.endswith("broken.jpg")][0]
    with pytest.raises(SkipSample, match="broken.jpg"):
        ds[broken]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no class folders"):
        ImageFolder(tmp_path)


def test_cifar10_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(tmp_path, train=False, transform=T.ToArray())
    assert len(train) == 20 and len(test) == 3
    x, y = train[5]
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and y == 1 and 0 <= x.min() and x.max() <= 1
    xt, _ = test[2]
    with open(root / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"][2].reshape(3, 32, 32)
    np.testing.assert_allclose(xt, raw / 255.0, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="cifar-10"):
        CIFAR10(tmp_path / "nowhere")
