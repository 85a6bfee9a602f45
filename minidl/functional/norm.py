"""Normalisation: local response normalisation (AlexNet, 2012) and batch normalisation (Ioffe & Szegedy, 2015)."""
from minidl import kernels
from minidl.autograd import Function, Tensor
from minidl.kernels.batchnorm import BNParams
from minidl.kernels.lrn import LRNParams


class LocalResponseNorm(Function):
    """b[c] = a[c] / (k + alpha * sum over channels c - size//2 ... c + (size-1)//2 of a^2) ** beta."""

    def __init__(self, size, alpha, beta, k):
        self.params = LRNParams(size, alpha, beta, k)

    def forward(self, x):
        self.x_shape = x.shape
        if x.size == 0:  # an empty batch (or no channels): nothing to normalise, and the kernels cannot reshape it
            return x.copy()
        x4 = x.reshape(x.shape[0], x.shape[1], 1, -1) if x.ndim != 4 else x  # kernels take (N, C, H, W)
        y, self.saved = kernels.of(x4).lrn_forward(x4, self.params)
        return y.reshape(self.x_shape)

    def backward(self, gy):
        if gy.size == 0:
            return gy.copy()
        n, c = self.x_shape[:2]
        gx = kernels.of(gy).lrn_backward(gy.reshape(n, c, 1, -1) if gy.ndim != 4 else gy, self.saved, self.params)
        return gx.reshape(self.x_shape)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """x (N, C, ...) -> same shape. The AlexNet paper's LRN: alpha is NOT divided by size, so this
    equals torch.nn.functional.local_response_norm(x, size, alpha * size, beta, k)."""
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected an input with at least 3 dims (N, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if int(size) != size or size < 1:
        raise ValueError(f"local_response_norm: size must be an int >= 1, got {size}")
    if k <= 0 or alpha < 0:  # the base k + alpha * sum(a^2) must stay positive for the power
        raise ValueError(f"local_response_norm: need k > 0 and alpha >= 0, got k={k}, alpha={alpha}")
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)


class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel (axis 1).

    Training: batch mean and biased batch variance; the running buffers are updated in place.
    Eval: the running buffers. Inputs are x and then weight and/or bias when given.
    """

    def __init__(self, running_mean, running_var, training, momentum, eps, has_weight, has_bias):
        self.running_mean, self.running_var = running_mean, running_var
        self.params = BNParams(training, momentum, eps)
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *params):
        params = list(params)
        weight = params.pop(0) if self.has_weight else None
        bias = params.pop(0) if self.has_bias else None
        # kernels see x as (N, C, L): one plane of L values per sample and channel
        self.x_shape = x.shape
        n, c = x.shape[:2]
        self.shape3 = (n, c, x.size // (n * c) if x.size else 0)
        y, self.saved = kernels.of(x).batch_norm_forward(
            x.reshape(self.shape3), weight, bias, self.running_mean, self.running_var, self.params)
        return y.reshape(self.x_shape)

    def backward(self, gy):
        gx, gw, gb = kernels.of(gy).batch_norm_backward(gy.reshape(self.shape3), self.saved, self.has_bias)
        grads = [gx.reshape(self.x_shape)]
        if self.has_weight:
            grads.append(gw)
        if self.has_bias:
            grads.append(gb)
        return tuple(grads)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """x (N, C) or (N, C, H, W); running_mean, running_var raw (C,) arrays (or None); weight, bias (C,).

    training=True normalises with the batch statistics and updates the buffers in place:
    r = (1 - momentum) * r + momentum * stat, the variance unbiased (m / (m - 1), m = N*H*W).
    training=False normalises with the buffers. Returns y, same shape as x.
    """
    # the buffers are raw arrays; unwrap Tensors so the in-place update reaches their data
    running_mean = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    running_var = running_var.data if isinstance(running_var, Tensor) else running_var
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dims (N, C, ...), got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != (c,):
            raise ValueError(f"batch_norm: input has {c} channels (shape {tuple(x.shape)}) "
                             f"but {name} has shape {tuple(a.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    training = bool(training) or running_mean is None  # without buffers there is only the batch
    if training and x.size // max(c, 1) < 2:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input shape "
                         f"{tuple(x.shape)}")
    inputs = [x] + [p for p in (weight, bias) if p is not None]
    fn = BatchNorm(running_mean, running_var, training, momentum, eps, weight is not None, bias is not None)
    return fn(*inputs)
