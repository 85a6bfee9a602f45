"""Charts drawn with matplotlib (Agg backend: no window ever opens; nothing touches pyplot's state).

    >>> line_plot({"ReLU": losses_relu, "tanh": losses_tanh}, title="training loss", xlabel="step")
    >>> plot_curves(trainer.history, "runs/demo/curves.png")     # what every `minidl train` run draws

Each function returns a PIL image (Jupyter shows it inline) of ``size`` pixels.
"""
import io
import math

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
DPI = 100


def figure(size):
    """A matplotlib Figure of ``size`` = (width, height) pixels on an Agg canvas (no GUI, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def to_image(fig):
    """The figure rendered as an RGB PIL image of exactly its pixel size."""
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    buf.seek(0)
    with Image.open(buf) as img:
        return img.convert("RGB")


def _rgb(color):
    return tuple(c / 255 for c in color) if isinstance(color, tuple) else color


def line_plot(series, title="", xlabel="", ylabel="", size=(520, 320), ylim=None, x=None):
    """Lines on shared axes; returns a PIL image.

    series: {label: values} or {label: (values, style)} with style a dict of ``width`` (pixels),
        ``color`` (RGB tuple or a matplotlib colour) and ``x`` (x values; default 1, 2, ...). Equal
        colours with different widths draw the paper's thin-training / bold-validation curves.
    """
    fig = figure(size)
    ax = fig.add_subplot()
    for i, (label, v) in enumerate(series.items()):
        values, style = (v if isinstance(v, tuple) else (v, {}))
        values = np.asarray(values, dtype=np.float64)
        xs = np.asarray(style.get("x", x if x is not None else np.arange(1, len(values) + 1)), dtype=np.float64)
        ax.plot(xs, values, label=str(label), color=_rgb(style.get("color", COLORS[i % len(COLORS)])),
                linewidth=style.get("width", 2) * 0.75, marker="o" if len(values) == 1 else None)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9")
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return to_image(fig)


def bar_chart(labels, values, title="", size=(520, 300), fmt="{:.3g}"):
    """Vertical bars with their values written on top; returns a PIL image."""
    fig = figure(size)
    ax = fig.add_subplot()
    values = np.asarray(values, dtype=np.float64)
    bars = ax.bar([str(v) for v in labels], values, color=[COLORS[i % len(COLORS)] for i in range(len(values))])
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return to_image(fig)


def curves_figure(history, size=(900, 380)):
    """Two panels: loss per epoch (train, held-out) and error per epoch in % (train top-1,
    held-out top-1 and top-5). ``history``: the Trainer's rows (dicts with "epoch" and those keys)."""
    fig = figure(size)
    panels = [("loss per epoch", "loss", [("train", "train_loss"), ("held-out", "val_loss")], 1.0),
              ("error per epoch", "error (%)", [("train top-1", "train_top1_error"),
                                                ("held-out top-1", "val_top1_error"),
                                                ("held-out top-5", "val_top5_error")], 100.0)]
    for p, (title, ylabel, series, scale) in enumerate(panels):
        ax = fig.add_subplot(1, 2, p + 1)
        for s, (label, key) in enumerate(series):
            pts = [(r["epoch"], r[key] * scale) for r in history
                   if r.get(key) is not None and math.isfinite(r[key])]
            if pts:
                e, v = zip(*pts)
                ax.plot(e, v, marker="o", markersize=3, label=label, color=COLORS[s])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, color="0.9")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(history, path=None, size=(900, 380)):
    """``curves_figure(history)`` as a PIL image, written atomically to ``path`` (PNG) when given."""
    fig = curves_figure(history, size)
    if path is not None:
        save_figure(fig, path)
    return to_image(fig)


def save_figure(fig, path):
    """Write a matplotlib figure as PNG the way every run file is written (atomically, usual mode)."""
    from minidl.checkpoint import atomic_write
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
