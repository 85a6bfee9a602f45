"""`minidl assignments train`: the solutions train TinyAlexNet like minidl's layers; a broken layer is named."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from minidl import assignments
from minidl.assignments import swap
from minidl.assignments.tasks import FILES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def folder_with(tmp_path, source, edits=()):
    for f in FILES:
        shutil.copyfile(os.path.join(source, f), tmp_path / f)
    for file, old, new in edits:
        text = (tmp_path / file).read_text()
        assert old in text
        (tmp_path / file).write_text(text.replace(old, new))
    return tmp_path


def test_one_layer_at_a_time_names_the_broken_layer(tmp_path):
    folder = folder_with(tmp_path, assignments.SOLUTIONS, [
        ("part4_lrn_dropout.py", "2 * self.alpha * self.beta", "self.alpha * self.beta"),
        ("part1_basics.py", "return g * (gy / n)", "return g * gy")])
    found = swap.diagnose(swap._load(str(folder)), list(swap.LAYERS))
    assert found["lrn"] is not None and "gradient of features.0.weight" in found["lrn"]
    assert found["softmax_cross_entropy"] is not None
    assert all(found[k] is None for k in swap.LAYERS if k not in ("lrn", "softmax_cross_entropy")), found


def test_swapped_net_keeps_layer_order_and_parameter_names():
    model, _, _ = swap._setup(0, 32)
    before = [k for k, _ in model.named_parameters()]
    ns = assignments.load_file(os.path.join(assignments.SOLUTIONS, "part1_basics.py"))
    paths = swap.swap_layers(model, ns, {"relu"})
    assert paths == ["features.1", "features.5", "classifier.2"]
    assert list(model.features._modules) == [str(i) for i in range(8)]
    assert [k for k, _ in model.named_parameters()] == before


def test_train_refuses_unfinished_layers_quickly(tmp_path):
    folder = folder_with(tmp_path, assignments.STARTERS)
    out = subprocess.run([sys.executable, "-m", "minidl.cli", "assignments", "train", str(folder)],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert out.returncode == 1
    assert "cannot train" in out.stdout and "conv" in out.stdout and "not written yet" in out.stdout


@pytest.mark.slow  # two 4-epoch trainings (yours and minidl's): about 2 minutes of CPU
def test_the_solutions_train_tiny_alexnet_to_the_librarys_error(tmp_path):
    folder = folder_with(tmp_path, assignments.SOLUTIONS)
    out = subprocess.run([sys.executable, "-m", "minidl.cli", "assignments", "train", str(folder)],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"top-1 error: yours ([\d.]+)%, minidl's ([\d.]+)%", out.stdout)
    assert m, out.stdout
    mine, ref = float(m.group(1)), float(m.group(2))
    assert abs(mine - ref) <= 2.0 and ref < 10.0, out.stdout
    assert "DIFFERS" not in out.stdout
