"""Top-9 patches: the image regions over a data set that excite one unit most (ZF Fig. 2, right halves).

A unit of a conv layer looks at a window of the input, its receptive field. ``receptive_field``
computes that window for every layer of a Sequential-style net from the kernel sizes, strides and
paddings; ``top_patches`` runs a data set through the net, keeps for every image the strongest
position of the chosen channel, and crops the receptive field around the k best ones.
"""
import numpy as np

from minidl import backend, nn
from minidl.autograd import Tensor, no_grad
from minidl.visualize.deconvnet import Deconvnet, flatten_layers
from minidl.visualize.filters import tile, to_uint8


class Field:
    """Receptive-field geometry after one layer: a unit at output (i, j) sees input rows
    ``start + i*jump - (size-1)/2`` to ``start + i*jump + (size-1)/2`` (``start`` may be fractional
    for even sizes, and the window may reach into the padding)."""

    def __init__(self, name, size, jump, start):
        self.name, self.size, self.jump, self.start = name, size, jump, start

    def box(self, i, j):
        """(top, left, height, width) in input pixels of the unit at (i, j); may stick out of the image."""
        top = int(np.floor(self.start + i * self.jump - (self.size - 1) / 2))
        left = int(np.floor(self.start + j * self.jump - (self.size - 1) / 2))
        return top, left, self.size, self.size

    def __repr__(self):
        return f"Field({self.name}: size {self.size}, jump {self.jump}, start {self.start:g})"


def _geometry(m):
    """(kernel, stride, padding) along one axis for a layer that moves the field, or None."""
    def first(v):
        return int(v[0]) if isinstance(v, (tuple, list)) else int(v)
    if isinstance(m, nn.Conv2d):
        return first(m.kernel_size), first(m.stride), first(m.padding)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = m.kernel_size if m.stride is None else m.stride
        return first(m.kernel_size), first(stride), first(m.padding)
    return None


def receptive_field(layers):
    """One ``Field`` per layer of a Sequential-style net (square kernels; dilation 1).

    The recurrence: size_out = size_in + (k - 1) * jump_in; jump_out = jump_in * s;
    start_out = start_in + ((k - 1) / 2 - p) * jump_in, from size 1, jump 1, start 0 at the input.
    """
    size, jump, start = 1, 1, 0.0
    out = []
    for i, m in enumerate(flatten_layers(layers)):
        g = _geometry(m)
        if g is not None:
            k, s, p = g
            size, start, jump = size + (k - 1) * jump, start + ((k - 1) / 2 - p) * jump, jump * s
        elif not isinstance(m, (nn.ReLU, nn.Tanh, nn.LocalResponseNorm, nn.Dropout, nn.BatchNorm2d, nn.Identity)):
            raise TypeError(f"receptive_field: cannot follow layer {i} ({type(m).__name__})")
        out.append(Field(f"{i}: {type(m).__name__}", size, jump, start))
    return out


def _batches(data, batch_size):
    """Yield (first index, batch array) from an (N, C, H, W) array/Tensor or an indexable data set of (x, y) or x."""
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "ndim") and hasattr(data, "shape"):
        for s in range(0, len(data), batch_size):
            yield s, data[s:s + batch_size]
        return
    for s in range(0, len(data), batch_size):
        items = [data[i] for i in range(s, min(s + batch_size, len(data)))]
        xs = [it[0] if isinstance(it, tuple) else it for it in items]
        yield s, np.stack([backend.as_numpy(getattr(x, "data", x)) for x in xs])


def _image(data, index):
    item = data[index]
    item = item[0] if isinstance(item, tuple) else item
    return np.asarray(backend.as_numpy(getattr(item, "data", item)), dtype=np.float64)


def crop(image, box):
    """Cut (top, left, h, w) out of a (C, H, W) image; parts outside the image are filled with zeros."""
    t, l, h, w = box
    C, H, W = image.shape
    out = np.zeros((C, h, w), dtype=np.float64)
    t0, l0, t1, l1 = max(t, 0), max(l, 0), min(t + h, H), min(l + w, W)
    if t1 > t0 and l1 > l0:
        out[:, t0 - t:t1 - t, l0 - l:l1 - l] = image[:, t0:t1, l0:l1]
    return out


class TopPatches:
    """The k strongest responses of one unit: ``scores``, image ``indices``, ``positions`` (h, w) in the
    layer's map, ``boxes`` (top, left, h, w) in the input, and ``patches`` ((C, h, w) arrays)."""

    def __init__(self, net, data, layer, channel, scores, indices, positions, field):
        self.net, self.data, self.layer, self.channel = net, data, layer, channel
        self.scores, self.indices, self.positions, self.field = scores, indices, positions, field
        self.boxes = [field.box(*p) for p in positions]
        self.patches = [crop(_image(data, i), b) for i, b in zip(indices, self.boxes)]

    def grid(self, scale=None, ncols=3):
        """The patches side by side (ncols=3 gives the paper's 3x3 block), each stretched on its own."""
        tiles = np.stack([to_uint8(p.transpose(1, 2, 0) if p.shape[0] == 3 else p[0]) for p in self.patches])
        scale = scale or max(1, int(np.ceil(48 / self.field.size)))
        return tile(tiles, ncols=ncols, scale=scale, padding=2)

    def deconv_grid(self, scale=None, ncols=3):
        """The deconvnet projections of the same units, cropped to their receptive fields (grey = 0)."""
        dn = Deconvnet(self.net)
        tiles = []
        for i, pos, box in zip(self.indices, self.positions, self.boxes):
            r = dn.project(_image(self.data, i).astype(np.float32), self.layer, self.channel, pos)
            p = crop(r.pixels, box)
            m = float(np.abs(p).max()) or 1.0
            tiles.append(to_uint8(p.transpose(1, 2, 0) if p.shape[0] == 3 else p[0], -m, m))
        scale = scale or max(1, int(np.ceil(48 / self.field.size)))
        return tile(np.stack(tiles), ncols=ncols, scale=scale, padding=2)


def top_patches(net, data, layer, channel, k=9, batch_size=64):
    """The k image patches of ``data`` that excite ``channel`` of ``layer`` most (one per image).

    net: a Sequential-style conv net (``model.features``); layer: index into its (flattened) layers.
    data: an (N, C, H, W) array or Tensor, or an indexable data set of (image, label) pairs.
    """
    layers = flatten_layers(net)
    field = receptive_field(layers)[layer]
    upto = nn.Sequential(*layers[:layer + 1])
    best, pos = [], []
    with no_grad():
        for _, xb in _batches(data, batch_size):
            a = backend.as_numpy(upto(Tensor(xb)).data[:, channel])   # (n, h, w)
            flat = a.reshape(len(a), -1)
            arg = flat.argmax(axis=1)
            best.append(flat[np.arange(len(a)), arg])
            pos.extend(zip(*np.unravel_index(arg, a.shape[1:])))
    scores = np.concatenate(best)
    order = np.argsort(-scores, kind="stable")[:k]
    positions = [tuple(int(v) for v in pos[i]) for i in order]
    return TopPatches(layers, data, layer, channel, scores[order], [int(i) for i in order], positions, field)
