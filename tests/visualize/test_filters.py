"""Filter grids and feature-map grids: layout, sizes, normalisation, valid PNG files."""
import os

import numpy as np
import pytest
from PIL import Image

import minidl as md
from minidl import nn
from minidl.visualize import filter_grid, save_filter_grid, feature_maps, feature_grid, save_feature_maps, to_image
from minidl.visualize.features import recording


def test_rgb_filter_grid_layout_and_png(tmp_path):
    w = np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32)
    path = tmp_path / "conv1.png"
    img = save_filter_grid(md.tensor(w), path, ncols=3, scale=2, padding=1)
    assert img.mode == "RGB" and img.size == (3 * (10 + 1) + 1, 2 * (10 + 1) + 1)
    with Image.open(path) as back:
        assert back.format == "PNG" and back.size == img.size and back.mode == "RGB"
        px = np.asarray(back)
    # tile (row 1, col 2) is filter 5, enlarged 2x, stretched on its own to the full range
    t = px[1 + 11:1 + 11 + 10, 1 + 22:1 + 22 + 10]
    assert t.min() == 0 and t.max() == 255
    f = w[5].transpose(1, 2, 0)
    expect = np.round((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    assert np.array_equal(t, expect)
    assert (px[0] == 255).all()  # the padding is white


def test_dead_filter_is_grey_and_global_normalisation():
    w = np.zeros((4, 1, 3, 3))
    w[0, 0] = np.arange(9).reshape(3, 3)
    img = np.asarray(filter_grid(w, ncols=4, scale=1, padding=0))
    assert img.shape == (3, 12)
    assert (img[:, 3:] == 128).all()              # filters 1-3 are all zero: mid grey
    assert img[0, 0] == 0 and img[2, 2] == 255
    g = np.asarray(filter_grid(w, ncols=4, scale=1, padding=0, normalize="global"))
    assert (g[:, 3:] == 0).all()                  # one range for the layer: zeros map to its minimum (0)


def test_many_channel_filters_one_row_per_filter():
    w = np.random.default_rng(1).standard_normal((5, 20, 3, 3))
    img = filter_grid(w, scale=1, padding=1, max_channels=8)
    assert img.mode == "L" and img.size == (8 * 4 + 1, 5 * 4 + 1)


def test_filter_grid_rejects_non_conv_weights():
    with pytest.raises(ValueError, match="conv weight"):
        filter_grid(np.zeros((3, 4)))


def test_to_image_channel_orders():
    a = np.random.default_rng(0).random((3, 4, 5))
    assert to_image(a).size == (5, 4) and to_image(a).mode == "RGB"
    assert to_image(a.transpose(1, 2, 0)).size == (5, 4)
    assert to_image(a[:1], scale=3).size == (15, 12)


def test_feature_maps_of_a_named_layer_match_running_the_layers(tmp_path):
    md.manual_seed(0)
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Sequential(nn.AvgPool2d(2), nn.ReLU()))
    x = np.random.default_rng(0).standard_normal((4, 8, 8)).astype(np.float32)
    m = feature_maps(net, x, 1)
    expect = np.maximum(x, 0).reshape(4, 4, 2, 4, 2).max(axis=(2, 4))
    assert m.shape == (4, 4, 4) and np.allclose(m, expect)
    inner = feature_maps(net, x, "2.0")
    assert inner.shape == (4, 2, 2) and np.allclose(inner, expect.reshape(4, 2, 2, 2, 2).mean(axis=(2, 4)))
    assert "forward" not in net[1].__dict__      # the model is left as it was
    img = save_feature_maps(net, x, "1", tmp_path / "maps.png", ncols=2, scale=2, padding=1)
    with Image.open(tmp_path / "maps.png") as back:
        assert back.format == "PNG" and back.size == (2 * 9 + 1, 2 * 9 + 1) == img.size


def test_unknown_layer_names_the_choices():
    net = nn.Sequential(nn.ReLU())
    with pytest.raises(KeyError, match="layers are"):
        feature_maps(net, np.zeros((1, 2, 2)), "features.9")


def test_recording_restores_forward_after_errors():
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(RuntimeError):
        with recording(net, ["0"]):
            raise RuntimeError("boom")
    assert "forward" not in net[0].__dict__


def test_feature_grid_global_shows_dead_maps_dark():
    m = np.zeros((2, 3, 3))
    m[0] = np.arange(9).reshape(3, 3)
    g = np.asarray(feature_grid(m, ncols=2, scale=1, padding=0, normalize="global"))
    assert (g[:, 3:] == 0).all() and g[2, 2] == 255


def test_plot_filters_draws_a_titled_figure(tmp_path):
    from minidl.visualize import plot_filters
    w = np.random.default_rng(2).standard_normal((16, 1, 5, 5))
    img = plot_filters(w, tmp_path / "filters.png", title="conv1")
    assert min(img.size) >= 320                        # a 5x5 first layer is enlarged, not a thumbnail
    with Image.open(tmp_path / "filters.png") as back:
        assert back.format == "PNG" and back.size == img.size
    px = np.asarray(img.convert("L"))
    assert px.min() < 40 and px.max() > 215            # the tiles' range is drawn
    assert not any(n.startswith(".tmp-") for n in os.listdir(tmp_path))
