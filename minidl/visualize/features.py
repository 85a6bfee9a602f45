"""Feature maps: the output of any layer of any model for one image, and a picture of its channels.

Works on every model, not only Sequential ones: the chosen layers' ``forward`` is wrapped for the
duration of one forward pass to record what they return (the model itself is not changed).

    >>> maps = feature_maps(model, image, "features.3")    # (C, H, W) array
    >>> feature_grid(maps)                                  # a PIL image, one tile per channel
"""
import contextlib

import numpy as np
from PIL import Image

from minidl import backend
from minidl.autograd import Tensor, no_grad
from minidl.visualize.filters import as_array, tile, to_uint8


def as_batch(image, dtype=np.float32):
    """A (1, C, H, W) array from a PIL image (scaled to [0, 1]), a (C, H, W) / (1, C, H, W) array or a Tensor."""
    if isinstance(image, Image.Image):
        a = np.asarray(image, dtype=dtype) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return a[None].astype(dtype)
    a = image.data if isinstance(image, Tensor) else image
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {a.shape}")
    return a


def _resolve(model, layer):
    """(name, module) for a layer given by name ("features.3"), index (Sequential) or the module itself."""
    named = dict(model.named_modules())
    if isinstance(layer, (int, np.integer)):
        layer = str(int(layer))
    if isinstance(layer, str):
        if layer not in named:
            some = ", ".join(list(n for n in named if n)[:12])
            raise KeyError(f"no layer named {layer!r} in {type(model).__name__}; layers are: {some}, ...")
        return layer, named[layer]
    for name, m in named.items():
        if m is layer:
            return name, m
    raise KeyError(f"{type(layer).__name__} is not a layer of {type(model).__name__}")


@contextlib.contextmanager
def recording(model, layers):
    """Within the block, ``record[name]`` holds the latest output (raw array) of each chosen layer."""
    record, wrapped = {}, []
    for layer in layers:
        name, m = _resolve(model, layer)
        original = m.forward

        def forward(*args, _original=original, _name=name, **kwargs):
            out = _original(*args, **kwargs)
            record[_name] = out.data if isinstance(out, Tensor) else out
            return out
        object.__setattr__(m, "forward", forward)  # an instance attribute shadows the class's forward
        wrapped.append(m)
    try:
        yield record
    finally:
        for m in wrapped:
            object.__delattr__(m, "forward")


def layer_outputs(model, x, layers):
    """{name: raw array} of the outputs of ``layers`` when ``model`` runs on batch ``x`` (no gradients)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    with recording(model, layers) as record, no_grad():
        model(x)
    return dict(record)


def feature_maps(model, image, layer):
    """The output of ``layer`` for one image: a host (C, H, W) array (the model is run in its current mode)."""
    batch = as_batch(image)
    name, _ = _resolve(model, layer)
    out = layer_outputs(model, batch, [name])[name]
    return backend.as_numpy(out)[0]


def feature_grid(maps, ncols=None, scale=None, normalize="map", max_maps=64, padding=1):
    """Channels of a (C, H, W) feature map side by side as one grey PIL image (the first ``max_maps``).

    normalize: "map" stretches each channel on its own; "global" shares one range, so that channels
    which barely respond (or are dead after ReLU: all zero) look dark.
    """
    m = as_array(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"feature_grid: expected feature maps (C, H, W), got shape {m.shape}")
    m = m[:max_maps]
    if scale is None:
        scale = max(1, int(np.ceil(32 / max(m.shape[1:]))))
    lo, hi = m.min(), m.max()
    if normalize == "map":
        tiles = np.stack([to_uint8(c) for c in m])
    elif normalize == "global":
        tiles = np.stack([to_uint8(c, lo, hi) for c in m])
    else:
        raise ValueError(f"feature_grid: normalize must be 'map' or 'global', got {normalize!r}")
    return tile(tiles, ncols=ncols, padding=padding, scale=scale)


def save_feature_maps(model, image, layer, path, **kwargs):
    """Write the feature maps of ``layer`` for ``image`` as a PNG grid; returns the image."""
    img = feature_grid(feature_maps(model, image, layer), **kwargs)
    img.save(path)
    return img
