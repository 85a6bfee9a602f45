"""`minidl train`, `eval` and `classify` end to end on the embedded digits (in-process, via cli.main)."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from minidl import cli
from minidl.data import Digits

FINAL = re.compile(r"^top-1 error (\d+\.\d)%  top-5 error (\d+\.\d)%$")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    return out


def last_line(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return out, out[-1]


def test_train_one_epoch_then_eval_and_classify(run_dir, capsys, tmp_path):
    assert cli.main(["train", "--epochs", "1", "--out", str(run_dir), "--no-progress"]) == 0
    lines, last = last_line(capsys)
    m = FINAL.match(last)
    assert m, last
    assert float(m.group(1)) < 50.0          # one epoch already learns most digits
    assert any(str(run_dir) in line for line in lines)   # it says where the outputs went
    for name in ("checkpoint.npz", "model.npz", "log.csv", "curves.png", "filters.png", "config.json"):
        assert (run_dir / name).is_file(), name

    assert cli.main(["eval", str(run_dir)]) == 0
    _, last_eval = last_line(capsys)
    assert last_eval == last                  # the same weights on the same held-out split

    assert cli.main(["eval", str(run_dir / "checkpoint.npz"), "--ten-crop"]) == 0
    lines, last_ten = last_line(capsys)
    assert FINAL.match(last_ten) and "five (no mirrors for digits) crops" in lines[-2]

    # a held-out digit as a PNG: black ink on white paper, 64x64 (classify inverts and rescales it)
    test = Digits(train=False)
    x, label = test[0]
    png = tmp_path / "digit.png"
    Image.fromarray((255 - x[0] * 255).astype(np.uint8)).resize((64, 64)).save(png)
    assert cli.main(["classify", str(png), "--weights", str(run_dir)]) == 0
    lines, _ = last_line(capsys)
    rows = [ln for ln in lines if re.match(r"^\s+\d\.\s+\d+\.\d%\s+\d$", ln)]  # a digit named once, not "3 (3)"
    assert len(rows) == 5, lines
    probs = [float(re.search(r"(\d+\.\d)%", r).group(1)) for r in rows]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.1


def test_resume_a_finished_run_and_bad_checkpoint(run_dir, capsys):
    # resuming a finished run trains no further and reports its held-out errors again
    before = (run_dir / "log.csv").read_text()
    assert cli.main(["train", "--resume", "--out", str(run_dir), "--no-progress"]) == 0
    lines, last = last_line(capsys)
    assert FINAL.match(last) and any("resumed from" in ln and "after epoch 1" in ln for ln in lines)
    assert (run_dir / "log.csv").read_text() == before
    assert cli.main(["train", "--resume", "--out", str(run_dir), "--model", "alexnet"]) == 1
    assert "--model tiny_alexnet" in capsys.readouterr().err
    ckpt = run_dir / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert cli.main(["train", "--resume", "--epochs", "3", "--out", str(run_dir), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint.npz" in err and "corrupt" in err
    assert cli.main(["eval", str(ckpt)]) == 1
    assert "checkpoint.npz" in capsys.readouterr().err


def test_bad_data_spec(capsys, tmp_path):
    assert cli.main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    assert "--data" in capsys.readouterr().err


def test_failed_train_keeps_runs_latest(capsys, tmp_path, monkeypatch):
    # an invocation that fails before training (bad model or data) makes no run folder and leaves
    # runs/latest pointing at the last real run, so `minidl eval` / `--resume` still find it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "good").mkdir(parents=True)
    (tmp_path / "runs" / "latest").symlink_to("good")
    assert cli.main(["train", "--model", "nosuch", "--epochs", "1"]) == 1
    assert "nosuch" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "missing"), "--epochs", "1"]) == 1
    assert "--data" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "runs")) == ["good", "latest"]
    assert os.readlink(tmp_path / "runs" / "latest") == "good"


def test_corrupt_config_json_names_the_file(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{bad")
    assert cli.main(["eval", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "config.json" in err and err.count("\n") == 1


def test_classify_top_must_be_positive(run_dir, capsys, tmp_path):
    png = tmp_path / "x.png"
    Image.new("L", (32, 32), 0).save(png)
    for top in ("0", "-2"):
        assert cli.main(["classify", str(png), "--weights", str(run_dir), "--top", top]) == 1
        assert "--top" in capsys.readouterr().err


def test_eval_on_other_data_needs_the_same_classes(capsys, tmp_path):
    for name, classes in (("a", ("cat", "dog")), ("b", ("cat", "fish"))):
        for c in classes:
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(6 if name == "a" else 3):
                Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(tmp_path / name / c / f"{i}.png")
    out = tmp_path / "run"
    # 3 images a class hold none out (10%): said before training, naming the folder
    assert cli.main(["train", "--data", str(tmp_path / "b"), "--epochs", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "held-out" in err and str(tmp_path / "b") in err
    assert cli.main(["train", "--data", str(tmp_path / "a"), "--epochs", "1", "--out", str(out),
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--data", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "classes" in err and "fish" in err
