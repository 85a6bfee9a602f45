"""Charts drawn with matplotlib: pixel sizes, the curves of a run, and no GUI backend."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from minidl.visualize import bar_chart, line_plot, plot_curves

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HISTORY = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_top1_error": 0.5 / e,
            "val_top1_error": 0.6 / e, "val_top5_error": 0.1 / e} for e in (1, 2, 3)]


def colours(img):
    return len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0))


def test_line_and_bar_charts_are_images_of_the_asked_size():
    img = line_plot({"a": [3, 2, 1], "b": ([1, 2, 4], {"color": (214, 39, 40), "width": 1, "x": [0, 5, 10]})},
                    title="t", xlabel="step", size=(400, 300), ylim=(0, 5))
    assert img.size == (400, 300) and img.mode == "RGB" and colours(img) > 4
    assert bar_chart(["x", "y", "z"], [1.0, 2.5, 0.5], title="bars").size == (520, 300)


def test_curves_png_of_a_run(tmp_path):
    img = plot_curves(HISTORY, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as back:
        assert back.format == "PNG" and back.size == img.size == (900, 380)
    assert colours(img) > 4
    assert plot_curves([{"epoch": 1, "train_loss": float("nan"), "train_top1_error": 0.5}]).size == (900, 380)


def test_no_gui_backend_is_touched():
    code = ("import sys; from minidl.visualize import plot_curves, plot_filters; import numpy as np; "
            f"plot_curves({HISTORY!r}); plot_filters(np.ones((4, 3, 3, 3))); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), DISPLAY="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
