"""The ZF deconvnet lands where the receptive field of the chosen unit says; top-9 patches and receptive fields."""
import numpy as np
import pytest
from PIL import Image

import minidl as md
from minidl import nn
from minidl.visualize import Deconvnet, deconv_image, receptive_field, top_patches, conv_transpose

# an asymmetric 3x3 pattern: any flip or transpose of it would be noticed
P = np.array([[1.0, 0.0, 0.0],
              [1.0, 0.5, 0.0],
              [1.0, 1.0, 1.0]], dtype=np.float32)


def _set(conv, weight):
    conv.weight.data = np.asarray(weight, dtype=np.float32)
    if conv.bias is not None:
        conv.bias.data = np.zeros_like(conv.bias.data)


def _net_conv_relu_pool(stride=1, padding=0):
    md.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=stride, padding=padding), nn.ReLU(), nn.MaxPool2d(2))
    w = np.zeros((2, 1, 3, 3))
    w[0, 0] = P                  # channel 0 detects the pattern; channel 1 is a dead filter
    _set(net[0], w)
    return net


def test_projection_of_hand_set_filter_lands_on_the_pattern():
    net = _net_conv_relu_pool()
    img = np.zeros((1, 20, 20), dtype=np.float32)
    img[0, 9:12, 5:8] = P        # conv output (9, 5) matches the filter exactly
    r = Deconvnet(net).project(img, layer=2)
    assert r.channel == 0 and r.position == (4, 2)          # pool output of (9, 5)
    assert r.activation == pytest.approx((P * P).sum())
    expect = np.zeros((1, 20, 20))
    expect[0, 9:12, 5:8] = r.activation * P                  # unpool -> (9, 5); transposed filter paints P there
    assert np.allclose(r.pixels, expect, atol=1e-5)


def test_strided_padded_conv_projects_into_its_window():
    net = _net_conv_relu_pool(stride=2, padding=1)
    img = np.zeros((1, 21, 21), dtype=np.float32)
    img[0, 7:10, 5:8] = P       # the conv unit (4, 3) sees rows 2*4-1 .. 2*4+1 and columns 5 .. 7
    dn = Deconvnet(net)
    r = dn.project(img, layer=1, channel=0)                  # after the ReLU, before pooling
    assert r.position == (4, 3)
    expect = np.zeros((1, 21, 21))
    expect[0, 7:10, 5:8] = r.activation * P
    assert np.allclose(r.pixels, expect, atol=1e-5)
    # the same unit seen through the pool: the switch sends it back to (4, 3)
    r2 = dn.project(img, layer=2, channel=0)
    assert np.allclose(r2.pixels, expect, atol=1e-5)


def test_unpooling_uses_the_switches_not_the_window_corner():
    net = _net_conv_relu_pool()
    img = np.zeros((1, 12, 12), dtype=np.float32)
    img[0, 4:7, 3:6] = P        # conv max at (4, 3), the top-right cell of pool window (2, 1) (rows 4-5, cols 2-3)
    r = Deconvnet(net).project(img, layer=2, channel=0)
    assert r.position == (2, 1)
    nz = np.argwhere(np.abs(r.pixels[0]) > 1e-6)
    assert nz.min(axis=0).tolist() == [4, 3] and nz.max(axis=0).tolist() == [6, 5]


def test_the_way_back_rectifies_the_reconstruction():
    md.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 1), nn.ReLU())
    w1 = np.zeros((2, 1, 3, 3))
    w1[0, 0], w1[1, 0] = P, P.T
    _set(net[0], w1)
    _set(net[2], np.array([1.0, -1.0]).reshape(1, 2, 1, 1))
    img = np.zeros((1, 9, 9), dtype=np.float32)
    img[0, 3:6, 2:5] = P
    r = Deconvnet(net).project(img, layer=3, channel=0)
    assert r.position == (3, 2)
    # via conv2's transposed filter the unit sends +a to channel 0 and -a to channel 1; the ReLU drops
    # the negative part, so only the first filter is painted (plain backprop would paint P - P.T)
    expect = np.zeros((1, 9, 9))
    expect[0, 3:6, 2:5] = r.activation * P
    assert np.allclose(r.pixels, expect, atol=1e-5)


def test_conv_transpose_is_the_adjoint_of_conv():
    md.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 7))
    r = rng.standard_normal((2, 6, 4, 4))
    with md.no_grad():
        y = md.functional.conv2d(md.tensor(x), md.tensor(conv.weight.data.astype(np.float64)), None,
                                 conv.stride, conv.padding, conv.groups).data
    back = conv_transpose(r, conv, x.shape)
    assert np.isclose((y * r).sum(), (x * back).sum())     # <conv x, r> = <x, conv^T r>


def test_projection_stays_inside_the_receptive_field_of_a_deep_unit(tmp_path):
    md.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                        nn.LocalResponseNorm(3), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    img = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    fields = receptive_field(net)
    r = Deconvnet(net).project(img, layer=6)
    top, left, h, w = fields[6].box(*r.position)
    assert r.activation > 0
    nz = np.argwhere(np.abs(r.pixels).sum(axis=0) > 0)
    assert len(nz) > 0
    assert nz[:, 0].min() >= top and nz[:, 0].max() < top + h
    assert nz[:, 1].min() >= left and nz[:, 1].max() < left + w
    im = deconv_image(net, img, 6, scale=2)
    im.save(tmp_path / "deconv.png")
    with Image.open(tmp_path / "deconv.png") as back:
        assert back.format == "PNG" and back.size == (80, 80) and back.mode == "RGB"


def test_deconvnet_rejects_layers_it_cannot_invert():
    with pytest.raises(TypeError, match="features"):
        Deconvnet(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_deconvnet_refuses_an_average_pool_instead_of_unpooling_it_as_a_max_pool():
    # AvgPool2d is no MaxPool2d: it has no switches to unpool with
    assert not isinstance(nn.AvgPool2d(2), nn.MaxPool2d) and not isinstance(nn.MaxPool2d(2), nn.AvgPool2d)
    with pytest.raises(TypeError, match="layer 2 is an AvgPool2d.*max-pooling layers only"):
        Deconvnet(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.AvgPool2d(2)))


def test_receptive_fields_of_alexnet_and_vgg_stacks():
    alex = nn.Sequential(nn.Conv2d(3, 8, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),
                         nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 2))
    sizes = [f.size for f in receptive_field(alex)]
    assert sizes == [11, 11, 19, 51, 51, 67, 99, 131, 163, 195]
    assert receptive_field(alex)[-1].jump == 32
    vgg = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]
    assert [f.size for f in receptive_field(vgg)] == [3, 5, 7]


def test_top_patches_finds_the_strongest_images_and_their_windows(tmp_path):
    net = _net_conv_relu_pool()
    rng = np.random.default_rng(0)
    data = np.zeros((12, 1, 16, 16), dtype=np.float32)
    where = {}
    for i in range(12):                   # image i holds the pattern at strength i, at a random place
        t, l = rng.integers(0, 13, size=2)
        data[i, 0, t:t + 3, l:l + 3] = P * (i + 1)
        where[i] = (int(t), int(l))
    tp = top_patches(net, data, layer=1, channel=0, k=9, batch_size=5)
    assert tp.indices == list(range(11, 2, -1))
    assert np.all(np.diff(tp.scores) <= 0)
    for i, box, patch in zip(tp.indices, tp.boxes, tp.patches):
        assert box == where[i] + (3, 3)                 # the unit's window is where the pattern was put
        assert np.allclose(patch[0], P * (i + 1))
    g = tp.grid(scale=4)
    g.save(tmp_path / "top9.png")
    with Image.open(tmp_path / "top9.png") as back:
        assert back.size == (3 * (12 + 2) + 2, 3 * (12 + 2) + 2) and back.format == "PNG"
    assert tp.deconv_grid(scale=4).size == g.size
