"""Filter grids: the weights of a conv layer laid out as one picture (AlexNet's and ZF's Fig. "layer 1").

A first-layer filter of a colour net is a small RGB image (K, 3, R, S): each tile of the grid is
one filter, stretched to [0, 255] on its own so weak filters stay visible. Filters of deeper
layers have many input channels; there each input channel of a filter is a grey tile, one row
per filter.

    >>> img = filter_grid(model.features[0].weight)      # a PIL.Image, one tile per filter, pixel-exact
    >>> save_filter_grid(model.features[0].weight, "conv1.png")
    >>> plot_filters(model.features[0].weight, "filters.png", title="conv1")   # a titled matplotlib figure

``filter_grid`` composes the pixels itself (the grid *is* the weights, stretched); ``plot_filters``
draws that grid with matplotlib (Agg, no window) with a title giving the layer's shape, as the
filters.png of every ``minidl train`` run.
"""
import numpy as np
from PIL import Image

from minidl import backend


def as_array(x):
    """A host float64 NumPy array from a Tensor, Parameter, NumPy or CuPy array."""
    data = getattr(x, "data", x)
    return np.asarray(backend.as_numpy(data), dtype=np.float64)


def to_uint8(a, lo=None, hi=None):
    """Stretch ``a`` linearly so that lo -> 0 and hi -> 255 (default: its own min and max)."""
    a = np.asarray(a, dtype=np.float64)
    lo = a.min() if lo is None else lo
    hi = a.max() if hi is None else hi
    if hi - lo < 1e-12:  # a constant tile (a dead filter): mid grey
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def tile(tiles, ncols=None, padding=1, scale=1, background=255):
    """Lay out equally sized tiles (uint8, (n, h, w) grey or (n, h, w, 3) RGB) as one grid image.

    Every tile is enlarged ``scale`` times (nearest neighbour, so pixels stay visible) and
    separated by ``padding`` pixels of ``background``. The grid has ``ncols`` columns
    (default: about square). Size: width = ncols * (w*scale + padding) + padding, height alike.
    """
    tiles = np.asarray(tiles)
    if tiles.ndim not in (3, 4):
        raise ValueError(f"tile: expected (n, h, w) or (n, h, w, 3) uint8 tiles, got shape {tiles.shape}")
    n, h, w = tiles.shape[:3]
    if n == 0:
        raise ValueError("tile: no tiles to lay out")
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncols = int(ncols) if ncols else int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    shape = (nrows * (h + padding) + padding, ncols * (w + padding) + padding) + tiles.shape[3:]
    grid = np.full(shape, background, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y:y + h, x:x + w] = tiles[i]
    return Image.fromarray(grid, mode="RGB" if grid.ndim == 3 else "L")


def filter_grid(weight, ncols=None, padding=1, scale=None, normalize="filter", max_channels=16):
    """The filters of a conv layer as one PIL image.

    weight: (K, C, R, S) Tensor, Parameter or array. C == 3: one RGB tile per filter (ncols
        default: about square). C == 1: one grey tile per filter. Otherwise: one row per filter,
        one grey tile per input channel (the first ``max_channels`` of them).
    normalize: "filter" stretches each filter to the full grey range on its own (shape is what
        you look at); "global" uses one range for the whole layer (so weak filters look grey,
        which is how dead filters show up).
    scale: integer enlargement of every weight (default: so that tiles are at least ~24 pixels).
    """
    w = as_array(weight)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: expected a conv weight (K, C, R, S), got shape {w.shape}")
    if normalize not in ("filter", "global"):
        raise ValueError(f"filter_grid: normalize must be 'filter' or 'global', got {normalize!r}")
    K, C, R, S = w.shape
    if scale is None:
        scale = max(1, int(np.ceil(24 / max(R, S))))
    glo, ghi = w.min(), w.max()

    def stretch(a):
        return to_uint8(a) if normalize == "filter" else to_uint8(a, glo, ghi)

    if C == 3:
        tiles = np.stack([stretch(f.transpose(1, 2, 0)) for f in w])  # (K, R, S, 3)
    elif C == 1:
        tiles = np.stack([stretch(f[0]) for f in w])
    else:
        c = min(C, max_channels)
        tiles = np.stack([stretch(f[:c]) for f in w]).reshape(K * c, R, S)
        ncols = c
    return tile(tiles, ncols=ncols, padding=padding, scale=scale)


def save_filter_grid(weight, path, **kwargs):
    """Write ``filter_grid(weight, **kwargs)`` to ``path`` (PNG by the file's extension); returns the image."""
    img = filter_grid(weight, **kwargs)
    img.save(path)
    return img


def plot_filters(weight, path=None, title=None, min_side=320, **grid_kwargs):
    """``filter_grid(weight, **grid_kwargs)`` drawn with matplotlib, at least ``min_side`` pixels on
    its short side (pixels kept sharp), titled with the layer's shape; a PIL image, written
    atomically to ``path`` (PNG) when given."""
    from minidl.visualize import plots
    grid = filter_grid(weight, **grid_kwargs)
    K, C, R, S = as_array(weight).shape
    heading = f"{title + ': ' if title else ''}{K} filters of {C}x{R}x{S}"
    w, h = grid.size
    zoom = max(1.0, min_side / min(w, h))
    fig = plots.figure((int(w * zoom) + 20, int(h * zoom) + 40))
    ax = fig.add_axes((10 / fig.bbox.width, 10 / fig.bbox.height, 1 - 20 / fig.bbox.width, 1 - 40 / fig.bbox.height))
    ax.imshow(np.asarray(grid), cmap="gray" if grid.mode == "L" else None, vmin=0, vmax=255,
              interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    fig.suptitle(heading, fontsize=10, y=1 - 6 / fig.bbox.height, va="top")
    if path is not None:
        plots.save_figure(fig, path)
    return plots.to_image(fig)


def save_image(array, path, **kwargs):
    """Write a (C, H, W) / (H, W, C) / (H, W) array as an image (stretched to [0, 255]); returns it."""
    img = to_image(array, **kwargs)
    img.save(path)
    return img


def to_image(array, scale=1, lo=None, hi=None):
    """A PIL image of an array: (3, H, W) or (H, W, 3) as RGB, (1, H, W) or (H, W) as grey.

    Values are stretched to [0, 255] between ``lo`` and ``hi`` (default: the array's min and max).
    """
    a = as_array(array)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"to_image: expected an image (C, H, W) or (H, W, C) with C in (1, 3), got shape {a.shape}")
    u8 = to_uint8(a, lo, hi)
    if scale > 1:
        u8 = u8.repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(u8, mode="RGB" if u8.ndim == 3 else "L")
