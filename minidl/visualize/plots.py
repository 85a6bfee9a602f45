"""Small charts drawn with Pillow alone (no plotting library needed): training curves and bar charts.

    >>> line_plot({"ReLU": losses_relu, "tanh": losses_tanh}, title="training loss", xlabel="step")
"""
import numpy as np
from PIL import Image, ImageDraw

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = np.ceil(lo / step) * step
    return [v for v in np.arange(start, hi + step * 1e-9, step)]


def _fmt(v):
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def line_plot(series, title="", xlabel="", ylabel="", size=(520, 320), ylim=None, x=None):
    """Lines on shared axes; returns a PIL image.

    series: {label: values} or {label: (values, style)} with style a dict of ``width`` (pixels),
        ``color`` (RGB tuple) and ``x`` (x values; default 1, 2, ...). Equal colours with
        different widths draw the paper's thin-training / bold-validation curves.
    """
    W, H = size
    left, right, top, bottom = 58, 12, 26, 44
    items = []
    for i, (label, v) in enumerate(series.items()):
        values, style = (v if isinstance(v, tuple) else (v, {}))
        values = np.asarray(values, dtype=np.float64)
        xs = np.asarray(style.get("x", x if x is not None else np.arange(1, len(values) + 1)), dtype=np.float64)
        items.append((label, xs, values, style.get("color", COLORS[i % len(COLORS)]), style.get("width", 2)))
    finite = np.concatenate([v[np.isfinite(v)] for _, _, v, _, _ in items] or [np.zeros(1)])
    allx = np.concatenate([xs for _, xs, _, _, _ in items] or [np.zeros(1)])
    ylo, yhi = (finite.min(), finite.max()) if ylim is None else ylim
    if yhi - ylo < 1e-12:
        ylo, yhi = ylo - 0.5, yhi + 0.5
    pad = 0.05 * (yhi - ylo) if ylim is None else 0.0
    ylo, yhi = ylo - pad, yhi + pad
    xlo, xhi = allx.min(), max(allx.max(), allx.min() + 1)

    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)

    def px(xv, yv):
        return (left + (xv - xlo) / (xhi - xlo) * (W - left - right),
                top + (yhi - yv) / (yhi - ylo) * (H - top - bottom))

    for t in _ticks(ylo, yhi):
        _, y = px(xlo, t)
        d.line([(left, y), (W - right, y)], fill=(230, 230, 230))
        d.text((4, y - 6), _fmt(t), fill="black")
    for t in _ticks(xlo, xhi, 6):
        xx, _ = px(t, ylo)
        d.line([(xx, H - bottom), (xx, H - bottom + 4)], fill="black")
        d.text((xx - 8, H - bottom + 6), _fmt(t), fill="black")
    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for label, xs, values, color, width in items:
        pts = [px(a, b) for a, b in zip(xs, values) if np.isfinite(b)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=int(width))
        elif pts:
            d.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=color)
    for i, (label, _, _, color, width) in enumerate(items):  # legend, top right
        y = top + 6 + 13 * i
        d.line([(W - right - 150, y + 5), (W - right - 130, y + 5)], fill=color, width=int(width))
        d.text((W - right - 125, y), str(label), fill="black")
    d.text((left, 6), title, fill="black")
    d.text(((W - len(xlabel) * 6) / 2, H - 16), xlabel, fill="black")
    d.text((4, top - 16 if top > 16 else 0), ylabel, fill=(90, 90, 90))
    return img


def bar_chart(labels, values, title="", size=(520, 300), fmt="{:.3g}"):
    """Vertical bars with their values written on top; returns a PIL image."""
    W, H = size
    left, right, top, bottom = 12, 12, 28, 40
    values = np.asarray(values, dtype=np.float64)
    vmax = max(values.max(initial=0), 1e-12)
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    n = len(values)
    slot = (W - left - right) / max(n, 1)
    for i, (label, v) in enumerate(zip(labels, values)):
        x0, x1 = left + i * slot + slot * 0.15, left + (i + 1) * slot - slot * 0.15
        y = top + (1 - v / vmax) * (H - top - bottom)
        d.rectangle([x0, y, x1, H - bottom], fill=COLORS[i % len(COLORS)])
        d.text((x0, y - 12), fmt.format(v), fill="black")
        d.text((x0, H - bottom + 4), str(label)[:int(slot / 6) + 1], fill="black")
    d.line([(left, H - bottom), (W - right, H - bottom)], fill="black")
    d.text((left, 6), title, fill="black")
    return img
