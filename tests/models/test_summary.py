"""summary(): shapes, parameter and multiply-add counts, receptive fields; the `minidl summary` command."""
import numpy as np
import pytest

import minidl as md
from minidl import models, nn
from minidl.cli import main


@pytest.fixture(scope="module")
def alexnet():
    return models.alexnet()


def conv_stack(n, channels=4, kernel=3):
    layers = []
    c = 3
    for _ in range(n):
        layers += [nn.Conv2d(c, channels, kernel, padding=kernel // 2), nn.ReLU()]
        c = channels
    return nn.Sequential(*layers)


@pytest.mark.parametrize("n, rf", [(1, 3), (2, 5), (3, 7), (4, 9)])
def test_stacked_3x3_receptive_field(n, rf):
    s = models.summary(conv_stack(n), (3, 16, 16))
    assert s.rows[-1].rf == (rf, rf)
    assert s.rows[-1].jump == (1, 1)


def test_stacked_3x3_have_fewer_weights_than_one_big_kernel():
    c = 64
    # three 3x3 layers on C channels vs one 7x7, both C -> C, no bias: 27 C^2 < 49 C^2
    stack3 = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    one7 = nn.Sequential(nn.Conv2d(c, c, 7, padding=3, bias=False))
    s3, s7 = models.summary(stack3, (c, 16, 16)), models.summary(one7, (c, 16, 16))
    assert s3.rows[-1].rf == s7.rows[-1].rf == (7, 7)
    assert s3.total_params == 27 * c * c and s7.total_params == 49 * c * c
    assert s3.total_madds == 27 * c * c * 16 * 16 and s7.total_madds == 49 * c * c * 16 * 16


def test_stride_and_pool_receptive_field(alexnet):
    # 11x11/4 then 3x3/2 pool then 5x5: r = 11, then 11 + 2*4 = 19, then 19 + 4*8 = 51 (AlexNet)
    s = models.summary(alexnet, (3, 227, 227))
    rf = {r.name: (r.rf[0], r.jump[0]) for r in s.rows}
    assert rf["features.conv1"] == (11, 4)
    assert rf["features.pool1"] == (19, 8)
    assert rf["features.conv2"] == (51, 8)
    assert rf["features.pool5"] == (195, 32)


def test_vgg16_receptive_fields():
    from minidl.models.vgg import CONFIGS, make_features
    s = models.summary(make_features(CONFIGS["D"]), (3, 224, 224))  # the conv stack alone: quick to build
    convs = [r for r in s.rows if r.kind in ("Conv2d", "MaxPool2d")]
    expected = [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert [r.rf[0] for r in convs] == expected
    assert convs[-1].jump == (32, 32)


def test_alexnet_paper_counts(alexnet):
    s = models.summary(alexnet, (3, 227, 227))
    conv1 = s.row("features.conv1")
    assert conv1.output_shape == (1, 96, 55, 55)
    assert conv1.madds == 96 * 11 * 11 * 3 * 55 * 55
    assert conv1.params == 96 * 11 * 11 * 3 + 96
    conv2 = s.row("features.conv2")  # two towers: each filter sees 48 channels
    assert conv2.madds == 256 * 48 * 5 * 5 * 27 * 27
    assert s.row("classifier.fc6").madds == 9216 * 4096
    assert s.total_params == alexnet.num_parameters() == 60_965_224
    assert sum(r.params for r in s.rows) == s.total_params
    assert s.total_madds == sum(r.madds for r in s.rows)
    assert s.output_shapes == [(1, 1000)]


@pytest.mark.parametrize("name", ["resnet18", "googlenet_torchvision", "nin", "resnet20_cifar"])
def test_row_parameters_add_up(name):
    m = models.get_model(name)
    s = models.summary(m, models.input_shape(name))
    assert sum(r.params for r in s.rows) == m.num_parameters() == s.total_params


def test_summary_shapes_match_a_real_forward():
    md.manual_seed(0)
    m = models.resnet18(num_classes=7).eval()
    x = md.tensor(np.random.default_rng(0).standard_normal((1, 3, 40, 40)).astype(np.float32))
    s = models.summary(m, (3, 40, 40), depth=1)
    with md.no_grad():
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        assert s.row("maxpool").output_shape == h.shape
        for name in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(m, name)(h)
            assert s.row(name).output_shape == h.shape
        assert s.output_shapes == [m(x).shape] == [(1, 7)]


def test_depth_groups_rows_and_sums_madds():
    m = models.googlenet()
    flat = models.summary(m, (3, 224, 224))
    grouped = models.summary(m, (3, 224, 224), depth=1)
    assert flat.total_madds == grouped.total_madds
    r = grouped.row("inception3a")
    assert r.output_shape == (1, 256, 28, 28)
    assert r.params == m.inception3a.num_parameters()
    assert r.madds == sum(x.madds for x in flat.rows if x.name.startswith("inception3a."))
    # 1x1 (64) + reduce 96 -> 3x3 128 + reduce 16 -> 5x5 32 + pool proj 32, at 28x28 on 192 channels
    expected = 28 * 28 * (192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16 + 16 * 25 * 32 + 192 * 32)
    assert r.madds == expected


def test_train_mode_shows_aux_heads_eval_mode_does_not():
    m = models.googlenet()
    train = models.summary(m, (3, 224, 224), depth=1)
    assert [s for s in train.output_shapes] == [(1, 1000)] * 3
    assert "aux1" in [r.name for r in train.rows]
    m.eval()
    ev = models.summary(m, (3, 224, 224), depth=1)
    assert ev.output_shapes == [(1, 1000)]
    assert "aux1" not in [r.name for r in ev.rows]
    assert ev.total_params == train.total_params == 13_378_280
    assert "not used in this pass" in str(ev) and "6,379,728" in str(ev)
    assert m.training is False  # the mode is left as it was


def test_summary_leaves_the_model_unchanged():
    m = models.resnet_cifar(20)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    models.summary(m, (3, 32, 32))
    assert all("forward" not in mod.__dict__ for mod in m.modules())
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # BN counters and stats untouched


def test_summary_reports_a_shape_error_with_the_layer(alexnet):
    with pytest.raises(ValueError, match="Linear: input has"):
        models.summary(alexnet, (3, 224, 224))  # the paper's AlexNet needs 227
    with pytest.raises(ValueError, match="Conv2d: input has 1 channels"):
        models.summary(models.resnet_cifar(20), (1, 32, 32))


def test_table_text(alexnet):
    text = str(models.summary(alexnet, (3, 227, 227)))
    assert "features.conv1" in text and "96x55x55" in text and "105,415,200" in text
    assert "60,965,224" in text


@pytest.mark.parametrize("name, params", [("alexnet", "60,965,224"), ("vgg16", "138,357,544"),
                                          ("googlenet", "13,378,280"), ("resnet50", "25,557,032")])
def test_cli_summary(name, params, capsys):
    assert main(["summary", name]) == 0
    out = capsys.readouterr().out
    assert params in out
    assert "mult-adds" in out and "RF" in out


def test_cli_summary_options(capsys):
    assert main(["summary", "resnet20_cifar", "--depth", "1", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "64x16x16" in out and "269,722" in out
    assert main(["summary", "--list"]) == 0
    assert "vgg16_bn" in capsys.readouterr().out
    assert main(["summary", "nosuchnet"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_googlenet_totals_with_and_without_aux_heads():
    import subprocess
    import sys
    m = models.googlenet()
    s = models.summary(m, (3, 224, 224))
    aux = sum(h.num_parameters() for h in (m.aux1, m.aux2))
    assert s.inference_params == s.total_params - aux == 6_998_552   # the paper's count without the heads
    ev = models.summary(m.eval(), (3, 224, 224))
    assert s.inference_madds == ev.total_madds < s.total_madds        # eval mode runs exactly the inference net
    assert [(h.name, h.after) for h in s.aux_heads] == [("aux1", "inception4a"), ("aux2", "inception4d")]
    proc = subprocess.run([sys.executable, "-m", "minidl.cli", "summary", "googlenet"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "13,378,280 = 6,998,552 inference network + 6,379,728 auxiliary heads" in out
    assert f"= {s.inference_madds:,}" in out and "logits" in out and "aux1 (auxiliary head on inception4a" in out
    assert "aux2 (auxiliary head on inception4d" in out
