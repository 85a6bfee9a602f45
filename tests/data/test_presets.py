"""Data specs of the `minidl` command: digits statistics, folder splits, the standard transforms."""
import numpy as np
import pytest
from PIL import Image

from minidl.data import Digits, presets


def test_digits_constants_match_the_data():
    d = Digits(train=True).data
    assert d.mean() == pytest.approx(presets.DIGITS_MEAN, abs=5e-4)
    assert d.std() == pytest.approx(presets.DIGITS_STD, abs=5e-4)


def test_digits_transforms(seeded):
    cfg = presets.data_config("digits")
    assert (cfg["image_size"], cfg["in_channels"], len(cfg["classes"])) == (32, 1, 10)
    x = Digits(train=False)[0][0]
    # the digits train without flips and a mirrored digit is another symbol: their "ten-crop" is the
    # five unmirrored views (corners and centre of the padded image)
    for split, shape in (("train", (1, 32, 32)), ("test", (1, 32, 32)), ("tencrop", (5, 1, 32, 32))):
        assert presets.make_transform(cfg, split)(x).shape == shape
    views = presets.make_transform(cfg, "tencrop")(x)
    np.testing.assert_array_equal(views[4], presets.make_transform(cfg, "test")(x))
    big = presets.data_config("digits", image_size=64, in_channels=3)
    ds = presets.build_dataset(big, False, presets.make_transform(big, "test"))
    assert ds[0][0].shape == (3, 64, 64)


def test_folder_split_and_transforms(tmp_path, seeded):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    cfg = presets.data_config(str(tmp_path), image_size=24)
    train = presets.build_dataset(cfg, True, presets.make_transform(cfg, "train"))
    held = presets.build_dataset(cfg, False, presets.make_transform(cfg, "tencrop"))
    assert len(train) == 18 and len(held) == 2
    assert not set(train.indices) & set(held.indices)
    assert train[0][0].shape == (3, 24, 24) and held[0][0].shape == (10, 3, 24, 24)
    with pytest.raises(ValueError, match="--data"):
        presets.parse_spec(str(tmp_path / "missing"))
