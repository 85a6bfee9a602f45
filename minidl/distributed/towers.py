"""AlexNet's two towers on two MPI ranks — the paper's two GTX 580s, made real.

Krizhevsky et al. split the net over two GPUs: each GPU held half the kernels of every layer,
and "the GPUs communicate only in certain layers": conv3 sees all of conv2's maps, and the fully
connected layers see everything. minidl's single-process ``alexnet(variant="paper")`` writes the
towers as grouped convolutions (groups=2). ``tower_alexnet(grouped)`` cuts that model in two:
rank r keeps group r of every grouped conv and half the filters / units of every other layer,
and the ranks exchange activations exactly where the towers meet:

    conv1, conv2 (+ ReLU, LRN, pool)  own tower            — LRN: a 2-channel halo, see below
    into conv3                        all_gather of pool2 (channels)
    conv3, conv4, conv5, pool5        own tower
    into fc6                          all_gather of pool5 (channels), flattened
    fc6: half the units; into fc7: all_gather; fc7: half the units
    fc8                               each rank multiplies its half of fc7 by its half of fc8's
                                      columns; all_reduce sums the two halves into the logits

The all-gather's backward is a reduce-scatter (the two ranks' uses of the gathered maps are
different parts of the loss); the logits are computed identically on both ranks and the loss
is counted once, so the all-reduce's backward passes the gradient through. The result equals the
grouped model: same loss, same gradients (checked in tests/distributed/test_towers.py).

LRN: the paper's GPUs each normalised their own maps, but minidl's grouped model (like Caffe's
single-GPU AlexNet) normalises across all channels, so the ``size // 2`` channels at a tower's
edge need the neighbour's edge maps. ``lrn_halo=True`` (default) exchanges just those maps to
stay identical to the grouped model; ``lrn_halo=False`` is the paper's per-GPU normalisation.
"""
from collections import OrderedDict

import numpy as np

from minidl import nn, functional as F
from minidl import distributed as dist
from minidl.distributed.comm import all_gather, all_reduce


def _copy_layer(layer, weight, bias):
    """A layer like ``layer`` (Conv2d or Linear) holding the given weight / bias arrays."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride, layer.padding,
                        bias=bias is not None)
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new.weight.data = np.array(weight, copy=True)
    if bias is not None:
        new.bias.data = np.array(bias, copy=True)
    return new


class TowerAlexNet(nn.Module):
    """This rank's tower. ``plan`` lists (name, how) in forward order; ``split[name]`` says along which
    axis each parameter was cut from the grouped model (None: a full copy on every rank)."""

    def __init__(self, grouped, comm=None, lrn_halo=True):
        super().__init__()
        self.comm = comm or dist.get_comm()
        self.rank, self.world = self.comm.Get_rank(), self.comm.Get_size()
        if self.world != 2:
            raise RuntimeError(f"alexnet(towers='mpi') runs on exactly 2 ranks (one per tower), got {self.world}; "
                               "start it with mpiexec -n 2")
        self.lrn_halo = lrn_halo
        if self.world > 1:
            dist.broadcast_module(grouped, self.comm)  # both towers cut from rank 0's weights
        r, w = self.rank, self.world
        layers = []  # (name, layer) in forward order: "features.conv1", …, "flatten", "classifier.fc6", …
        for cname, child in grouped.named_children():
            if isinstance(child, nn.Sequential):
                layers += [(f"{cname}.{k}", m) for k, m in child._modules.items()]
            else:
                layers.append((cname, child))
        last_linear = [n for n, m in layers if isinstance(m, nn.Linear)][-1]
        self.plan, self.split = [], {}
        groups = OrderedDict()
        tower_split = False  # is the current activation cut along channels (each rank its share)?
        for name, m in layers:
            how = "local"
            if isinstance(m, nn.Conv2d):
                k = m.out_channels // w
                if m.groups == w:       # a tower conv: group r is rank r's whole layer
                    if not tower_split:
                        raise ValueError(f"tower_alexnet: {name} is grouped but its input is not split")
                    m = _copy_layer(m, m.weight.data[r * k:(r + 1) * k], None if m.bias is None else
                                    m.bias.data[r * k:(r + 1) * k])
                elif m.groups == 1:     # sees every map: gather first if the input is split
                    how = "gather" if tower_split else "local"
                    m = _copy_layer(m, m.weight.data[r * k:(r + 1) * k], None if m.bias is None else
                                    m.bias.data[r * k:(r + 1) * k])
                else:
                    raise ValueError(f"tower_alexnet: {name} has groups={m.groups}; expected 1 or {w}")
                self.split.update({f"{name}.weight": 0, f"{name}.bias": 0})
                tower_split = True
            elif isinstance(m, nn.LocalResponseNorm) and tower_split:
                how = "halo_lrn" if lrn_halo else "local"
            elif isinstance(m, nn.Flatten) and tower_split:
                how, tower_split = "gather", False
            elif isinstance(m, nn.Linear):
                if name == last_linear and tower_split:   # split the input: partial sums, then all_reduce
                    k = m.in_features // w
                    m = _copy_layer(m, m.weight.data[:, r * k:(r + 1) * k], None if m.bias is None else m.bias.data)
                    how, tower_split = "reduce_linear", False
                    self.split.update({f"{name}.weight": 1, f"{name}.bias": None})
                else:
                    how = "gather" if tower_split else "local"
                    k = m.out_features // w
                    m = _copy_layer(m, m.weight.data[r * k:(r + 1) * k], None if m.bias is None else
                                    m.bias.data[r * k:(r + 1) * k])
                    tower_split = True
                    self.split.update({f"{name}.weight": 0, f"{name}.bias": 0})
            part, _, key = name.partition(".")
            if key:
                groups.setdefault(part, OrderedDict())[key] = m
            else:
                groups[part] = m
            self.plan.append((name, how))
        for part, mods in groups.items():
            setattr(self, part, nn.Sequential(mods) if isinstance(mods, OrderedDict) else mods)

    def _module(self, name):
        m = self
        for part in name.split("."):
            m = getattr(m, part)
        return m

    def forward(self, x):
        for name, how in self.plan:
            m = self._module(name)
            if how == "gather":
                x = m(all_gather(x, axis=1, comm=self.comm))
            elif how == "halo_lrn":
                x = self._halo_lrn(x, m)
            elif how == "reduce_linear":
                x = all_reduce(F.linear(x, m.weight), comm=self.comm)
                x = x + m.bias if m.bias is not None else x
            else:
                x = m(x)
        return x

    def _halo_lrn(self, x, lrn):
        """LRN of this rank's channels as if computed over all ranks' channels: fetch the ``size//2``
        maps below and ``(size-1)//2`` above from the neighbouring towers."""
        lo, hi = lrn.size // 2, (lrn.size - 1) // 2
        c, r, w = x.shape[1], self.rank, self.world
        edges = all_gather(F.concat([x[:, :hi], x[:, c - lo:]], axis=1), axis=1, comm=self.comm)
        e = hi + lo  # each rank's edge block: its first hi maps, then its last lo maps
        parts = ([edges[:, (r - 1) * e + hi:r * e]] if r > 0 else []) + [x] + \
                ([edges[:, (r + 1) * e:(r + 1) * e + hi]] if r < w - 1 else [])
        y = lrn(F.concat(parts, axis=1))
        start = lo if r > 0 else 0
        return y[:, start:start + c]

    # ---- the grouped model's layout, for checkpoints and tests ----------------------------------------
    def gather_full(self, what="data"):
        """name -> array in the grouped model's shapes, assembled from both towers (``what``:
        "data" for the weights, "grad" for their gradients). Collective: every rank must call it."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            a = p.data if what == "data" else p.grad
            a = np.zeros(p.shape, p.dtype) if a is None else np.asarray(a)
            axis = self.split.get(name)
            parts = self.comm.allgather(a)
            out[name] = parts[0] if axis is None else np.concatenate(parts, axis=axis)
        return out

    def load_full(self, state):
        """Take this tower's share of a grouped model's state dict (the inverse of ``gather_full``)."""
        for name, p in self.named_parameters():
            a, axis = np.asarray(state[name]), self.split.get(name)
            if axis is not None:
                k = a.shape[axis] // self.world
                a = np.take(a, np.arange(self.rank * k, (self.rank + 1) * k), axis=axis)
            p.data = a.astype(p.dtype, copy=True)
        return self


def tower_alexnet(grouped, comm=None, lrn_halo=True):
    """This rank's tower of the grouped (single-process) paper AlexNet ``grouped``."""
    return TowerAlexNet(grouped, comm, lrn_halo)


def two_tower_alexnet(num_classes=1000, dropout=0.5, width=1.0, comm=None, lrn_halo=True):
    """The paper's AlexNet on 2 ranks (``mpiexec -n 2``): this rank's tower of ``models.alexnet()``.

    Every rank must build it with the same seed (the grouped model's weights are cut, not sent)."""
    from minidl import models
    return tower_alexnet(models.alexnet(num_classes, "paper", dropout, width), comm, lrn_halo)
