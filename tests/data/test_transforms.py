"""Transforms: output shapes, statistics, and seeded randomness."""
import numpy as np
import pytest
from PIL import Image

from minidl import random
from minidl.data import transforms as T


@pytest.fixture
def img():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))


def test_resize_keeps_aspect_and_crops(img):
    assert T.Resize(20)(img).size == (30, 20)          # PIL size is (w, h): shorter side 20
    assert T.Resize((10, 12))(img).size == (12, 10)
    assert T.CenterCrop(32)(img).size == (32, 32)
    a = T.ToArray()(img)
    assert a.shape == (3, 40, 60) and a.dtype == np.float32
    assert T.Resize(20)(a).shape == (3, 20, 30)
    c = T.CenterCrop((10, 20))(a)
    np.testing.assert_array_equal(c, a[:, 15:25, 20:40])
    with pytest.raises(ValueError, match="larger than the image"):
        T.CenterCrop(50)(img)


def test_random_crop_with_padding(seeded):
    a = np.ones((1, 8, 8), dtype=np.float32)
    outs = [T.RandomCrop(8, padding=2)(a) for _ in range(50)]
    assert all(o.shape == (1, 8, 8) for o in outs)
    sums = {float(o.sum()) for o in outs}
    assert 64.0 in sums or len(sums) > 1           # some crops include the zero border
    assert min(sums) >= 36.0                        # never more than 2 rows/cols of padding
    assert len(sums) > 3


def test_random_resized_crop_and_flip(img, seeded):
    for _ in range(20):
        assert T.RandomResizedCrop(24)(img).size == (24, 24)
    a = T.ToArray()(img)
    flipped = [T.RandomHorizontalFlip()(a) for _ in range(40)]
    n_flipped = sum(not np.array_equal(f, a) for f in flipped)
    assert 8 < n_flipped < 32
    assert any(np.array_equal(f, a[..., ::-1]) for f in flipped)
    assert T.RandomHorizontalFlip(p=1.0)(img).tobytes() == img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()


def test_normalize_statistics():
    rng = np.random.default_rng(0)
    mean, std = np.array([0.2, 0.5, 0.7]), np.array([0.1, 0.3, 0.05])
    x = (rng.standard_normal((3, 64, 64)) * std[:, None, None] + mean[:, None, None]).astype(np.float32)
    y = T.Normalize(mean, std)(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=0.05)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=0.05)
    assert y.dtype == np.float32
    assert T.Normalize()(x).shape == (3, 64, 64)          # ImageNet constants by default
    with pytest.raises(ValueError, match="channel means"):
        T.Normalize()(x[:2])


def test_pca_lighting_changes_colour_not_shape(seeded):
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16), dtype=np.float32)
    y = T.PCALighting(0.1)(x)
    assert y.shape == x.shape and y.dtype == np.float32
    shift = (y - x).reshape(3, -1)
    assert np.abs(shift).max() > 1e-4
    np.testing.assert_allclose(shift, shift[:, :1].repeat(256, axis=1), atol=1e-6)  # same shift at every pixel
    # the shift lies in the span of the eigenvectors weighted by their eigenvalues: recover alpha
    alpha = np.linalg.solve(T.IMAGENET_EIGVEC, shift[:, 0].astype(np.float64)) / T.IMAGENET_EIGVAL
    assert np.all(np.abs(alpha) < 0.6)                  # N(0, 0.1): six sigma
    # over many draws alpha has standard deviation ~0.1
    alphas = []
    for _ in range(400):
        s = (T.PCALighting(0.1)(x) - x)[:, 0, 0].astype(np.float64)
        alphas.append(np.linalg.solve(T.IMAGENET_EIGVEC, s) / T.IMAGENET_EIGVAL)
    assert 0.08 < np.std(alphas) < 0.12
    np.testing.assert_array_equal(T.PCALighting(0.0)(x), x)


def test_ten_crop(img):
    crops = T.TenCrop(24)(img)
    assert len(crops) == 10 and all(c.size == (24, 24) for c in crops)
    assert crops[5].tobytes() == crops[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    batch = T.Compose([T.TenCrop(24), T.ToArray(), T.Normalize()])(img)
    assert batch.shape == (10, 3, 24, 24) and batch.dtype == np.float32
    a = T.ToArray()(img)
    arr = T.TenCrop((20, 30))(a)
    assert arr.shape == (10, 3, 20, 30)
    np.testing.assert_array_equal(arr[0], a[:, :20, :30])
    np.testing.assert_array_equal(arr[3], a[:, 20:, 30:])
    np.testing.assert_array_equal(arr[9], a[:, 10:30, 15:45][..., ::-1])


def test_randomness_follows_manual_seed(img):
    pipe = T.Compose([T.RandomResizedCrop(16), T.RandomHorizontalFlip(), T.ToArray(), T.PCALighting()])
    random.manual_seed(3)
    a = [pipe(img) for _ in range(3)]
    random.manual_seed(3)
    b = [pipe(img) for _ in range(3)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], a[1])
