"""The ZF deconvnet (Zeiler & Fergus 2014): map one unit of a conv layer back to pixel space.

Run the image forward through a Sequential-style conv net (Conv2d, ReLU, MaxPool2d, LRN, ...),
recording each max-pool's switches (where each maximum came from). At the chosen layer keep a
single activation — the strongest one of the chosen channel — and zero all others. Then walk the
layers backwards, each one inverted approximately:

    max-pool   -> unpool: put each value back where the switch says the maximum was, zeros elsewhere
    ReLU       -> ReLU on the reconstruction (keep it positive, as the forward features are)
    conv       -> convolve with the transposed filters: the backward-data pass of the same conv
                  (the same weights, flipped and with input/output channels swapped)
    LRN, dropout, batch norm -> passed through unchanged (ZF do not invert the normalisation)

until the input, where the result is an image-shaped pattern showing what in the picture excited
that unit. Unlike the gradient (plain backprop), the ReLU here looks at the reconstruction
itself, not at the forward activation.

    >>> r = Deconvnet(model.features).project(image, layer=11, channel=None)
    >>> r.image()                # PIL image of the projection; r.position, r.activation, r.pixels
"""
import numpy as np

from minidl import backend, kernels, nn
from minidl import functional as F
from minidl.autograd import Tensor, no_grad
from minidl.functional.pool import _pool_geometry
from minidl.visualize.features import as_batch
from minidl.visualize.filters import to_image

PASS_THROUGH = (nn.LocalResponseNorm, nn.Dropout, nn.BatchNorm2d, nn.Identity)


def flatten_layers(net):
    """The layers of a Sequential (nested Sequentials opened up) or of a list, in order."""
    out = []
    for m in (net if isinstance(net, (list, tuple)) else list(net)):
        if isinstance(m, nn.Sequential):
            out.extend(flatten_layers(m))
        else:
            out.append(m)
    return out


def conv_transpose(r, conv, in_shape):
    """The transposed convolution of r with ``conv``'s filters: the gradient of conv's output w.r.t. its input.

    r: (N, K, oh, ow) raw array. Returns (N, C, H, W) = in_shape. The bias plays no part.
    """
    xp = backend.xp_of(r)
    x = Tensor(xp.zeros(in_shape, dtype=r.dtype), requires_grad=True)
    w = Tensor(conv.weight.data.astype(r.dtype, copy=False))  # constant: only x's gradient is wanted
    y = F.conv2d(x, w, None, conv.stride, conv.padding, conv.groups)
    y.backward(r)
    return x.grad


class DeconvResult:
    """One projection: ``pixels`` (C, H, W) host array, the unit's ``layer``, ``channel``,
    ``position`` (h, w) in that layer's map, and its ``activation``."""

    def __init__(self, pixels, layer, channel, position, activation):
        self.pixels, self.layer, self.channel = pixels, layer, channel
        self.position, self.activation = position, activation

    def image(self, scale=1, crop=None):
        """The projection as a PIL image, stretched symmetrically around zero (grey = 0).

        crop: optional (top, left, height, width) box, e.g. the unit's receptive field.
        """
        p = self.pixels
        if crop is not None:
            t, l, h, w = crop
            p = p[:, max(t, 0):t + h, max(l, 0):l + w]
        m = float(np.abs(p).max()) or 1.0
        return to_image(p, scale=scale, lo=-m, hi=m)

    def __repr__(self):
        return (f"DeconvResult(layer={self.layer}, channel={self.channel}, position={self.position}, "
                f"activation={self.activation:.4g}, pixels shape {self.pixels.shape})")


class Deconvnet:
    """A deconvnet attached to the layers of a Sequential-style conv net (e.g. ``model.features``)."""

    def __init__(self, net):
        self.layers = flatten_layers(net)
        for i, m in enumerate(self.layers):
            if isinstance(m, nn.AvgPool2d):  # no switches to unpool with: ZF's inversion is for max-pooling
                raise TypeError(f"Deconvnet: layer {i} is an AvgPool2d; the deconvnet unpools max-pooling layers "
                                "only (with the switches of each maximum), and an average has none")
            if not isinstance(m, (nn.Conv2d, nn.ReLU, nn.MaxPool2d) + PASS_THROUGH):
                raise TypeError(f"Deconvnet: layer {i} is a {type(m).__name__}; only Conv2d, ReLU, MaxPool2d, "
                                "LocalResponseNorm, Dropout, BatchNorm2d and Identity can be inverted "
                                "(pass the convolutional part of the model, e.g. model.features)")

    def forward(self, image, layer):
        """Run layers 0..layer (inclusive) on one image; record what the way back needs. Returns the activation."""
        if not 0 <= layer < len(self.layers):
            raise IndexError(f"Deconvnet: layer {layer} out of range (the net has {len(self.layers)} layers)")
        x = as_batch(image)
        if x.shape[0] != 1:
            raise ValueError(f"Deconvnet: project one image at a time, got a batch of {x.shape[0]}")
        self.saved = []
        with no_grad():
            for m in self.layers[:layer + 1]:
                if isinstance(m, nn.MaxPool2d):
                    window = _pool_geometry("deconvnet", x, m.kernel_size, m.stride, m.padding, m.ceil_mode)
                    y, switches = kernels.of(x).max_pool_forward(x, window)
                    self.saved.append((switches, window))
                elif isinstance(m, PASS_THROUGH):
                    y = m(Tensor(x)).data
                    self.saved.append(None)
                else:  # Conv2d, ReLU
                    y = m(Tensor(x)).data
                    self.saved.append(x.shape)
                x = y
        return x

    def project(self, image, layer, channel=None, position=None):
        """Project one unit of ``layer``'s output (index into the flattened layers) back to pixels.

        channel: the feature map to follow (default: the one holding the strongest activation).
        position: (h, w) in that map (default: where the map is strongest). Everything else is zeroed.
        """
        a = self.forward(image, layer)
        xp = backend.xp_of(a)
        host = backend.as_numpy(a[0])
        if channel is None:
            channel = int(np.argmax(host.reshape(host.shape[0], -1).max(axis=1)))
        if position is None:
            position = np.unravel_index(int(np.argmax(host[channel])), host.shape[1:])
        position = tuple(int(p) for p in position)
        r = xp.zeros_like(a)
        r[0, channel, position[0], position[1]] = a[0, channel, position[0], position[1]]
        pixels = self.backproject(r, layer)
        return DeconvResult(backend.as_numpy(pixels[0]), layer, channel, position, float(host[channel][position]))

    def backproject(self, r, layer):
        """Send a reconstruction r (shaped like layer ``layer``'s output) down to the input, layer by layer."""
        for m, saved in zip(reversed(self.layers[:layer + 1]), reversed(self.saved)):
            if isinstance(m, nn.MaxPool2d):
                switches, window = saved
                r = kernels.of(r).max_pool_backward(r, switches, window)     # unpool with the switches
            elif isinstance(m, nn.ReLU):
                r = r * (r > 0)                                              # rectify the reconstruction
            elif isinstance(m, nn.Conv2d):
                r = conv_transpose(r, m, saved)                              # transposed filters
            # pass-through layers: unchanged
        return r


def deconv_image(net, image, layer, channel=None, scale=1):
    """Shortcut: the deconvnet projection of the strongest unit of ``channel`` in ``layer``, as a PIL image."""
    return Deconvnet(net).project(image, layer, channel).image(scale=scale)
