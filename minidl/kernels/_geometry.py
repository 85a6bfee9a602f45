"""Window geometry shared by the kernels, the functional ops, the layers and models.summary.

One sliding window over the (H, W) plane of an (N, C, H, W) array: its kernel (kh, kw), stride
(sh, sw), padding (ph, pw), and the output plane (oh, ow) it produces. Output row i's window
starts at input row i*sh - ph (negative inside the top padding); likewise for columns.
"""
from collections import namedtuple

import numpy as np

Window = namedtuple("Window", "h w kh kw sh sw ph pw oh ow")
Window.__doc__ = "Input plane (h, w), kernel, stride, padding, output plane (oh, ow) of a sliding window."


def pair(op, name, v):
    """An int or a pair of ints as (int, int); else a ValueError naming ``op`` and ``name``."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        v = tuple(v)
    except TypeError:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if len(v) != 2 or not all(isinstance(a, (int, np.integer)) for a in v):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v}")
    return int(v[0]), int(v[1])


def conv_output_size(size, kernel, stride, pad):
    """Output length of one axis of a convolution: floor((size + 2*pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_output_size(size, kernel, stride, pad, ceil_mode=False):
    """Output length of one axis of a pooling (PyTorch's rule, see reference/layers.md); 0 if nothing fits.

    ceil_mode rounds up, but the last window must still start inside the input or the left padding.
    """
    span = size + 2 * pad - kernel
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # last window would start in the right padding
        out -= 1
    return out


def _check(op, h, w, kh, kw, sh, sw, ph, pw, pool=False):
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel_size must be >= 1, got {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {(ph, pw)}")
    if pool and (2 * ph > kh or 2 * pw > kw):  # else a window could hold nothing but padding
        raise ValueError(f"{op}: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}")
    if (kh > h + 2 * ph or kw > w + 2 * pw) and pool:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input {(h, w)}, padding {(ph, pw)})")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{op}: kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{w + 2 * pw} "
                         f"(input {h}x{w}, padding {(ph, pw)})")


def conv_window(op, h, w, kernel_size, stride, padding):
    """The checked Window of a convolution over an h x w plane."""
    kh, kw = pair(op, "kernel_size", kernel_size)
    (sh, sw), (ph, pw) = pair(op, "stride", stride), pair(op, "padding", padding)
    _check(op, h, w, kh, kw, sh, sw, ph, pw)
    return Window(h, w, kh, kw, sh, sw, ph, pw, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))


def pool_window(op, h, w, kernel_size, stride=None, padding=0, ceil_mode=False):
    """The checked Window of a pooling over an h x w plane; stride defaults to kernel_size."""
    kh, kw = pair(op, "kernel_size", kernel_size)
    (sh, sw), (ph, pw) = pair(op, "stride", kernel_size if stride is None else stride), pair(op, "padding", padding)
    _check(op, h, w, kh, kw, sh, sw, ph, pw, pool=True)
    return Window(h, w, kh, kw, sh, sw, ph, pw,
                  pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode))


def window(x_shape, kh, kw, sh, sw, ph, pw, oh=None, ow=None):
    """A Window for an (N, C, H, W) shape from raw numbers (oh, ow default to the convolution's sizes)."""
    h, w = int(x_shape[-2]), int(x_shape[-1])
    oh = conv_output_size(h, kh, sh, ph) if oh is None else oh
    ow = conv_output_size(w, kw, sw, pw) if ow is None else ow
    return Window(h, w, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), int(oh), int(ow))


def covering(pos, pad, kernel, stride, out):
    """Outputs lo <= o < hi whose windows (start o*stride - pad, length kernel) cover input ``pos``."""
    p = pos + pad
    lo = (p - kernel) // stride + 1 if p >= kernel else 0
    return lo, min(p // stride + 1, out)
