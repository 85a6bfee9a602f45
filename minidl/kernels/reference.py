"""Plain NumPy reference versions of every kernel in cpu.py / gpu.py: slow, obvious, for tests.

Same names and signatures as minidl/kernels/cpu.py (see its docstring for the conventions).
"""
import numpy as np  # noqa: F401

# ==== convolution: im2col / col2im ====


def _conv_out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def im2col(x, kh, kw, sh, sw, ph, pw, out=None):
    """Pad, then copy each kernel offset (i, j) as one strided slice: col rows (c, i, j), columns (n, y, x)."""
    N, C, H, W = x.shape
    oh, ow = _conv_out_size(H, kh, sh, ph), _conv_out_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col = np.empty((C, kh, kw, N, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]  # (N, C, oh, ow)
            col[:, i, j] = patch.transpose(1, 0, 2, 3)
    col = col.reshape(C * kh * kw, N * oh * ow)
    if out is not None:
        out[...] = col
        return out
    return col


def col2im(col, x_shape, kh, kw, sh, sw, ph, pw, out=None):
    """Add each kernel offset's slice back into a padded image, then crop the padding away."""
    N, C, H, W = x_shape
    oh, ow = _conv_out_size(H, kh, sh, ph), _conv_out_size(W, kw, sw, pw)
    col = col.reshape(C, kh, kw, N, oh, ow)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += col[:, i, j].transpose(1, 0, 2, 3)
    x = xp[:, :, ph:ph + H, pw:pw + W]
    if out is not None:
        out[...] = x
        return out
    return np.ascontiguousarray(x)

# ==== pooling and local response normalisation ====


def _pool_window(i, stride, pad, kernel, size):
    """Rows start..stop of output i's window clipped to the input, and PyTorch's divisor extent."""
    start = i * stride - pad
    end = min(start + kernel, size + pad)  # padding counts, anything past it (ceil mode) does not
    return max(start, 0), min(end, size), end - start


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for i in range(oh):
        h0, h1, _ = _pool_window(i, sh, ph, kh, h)
        for j in range(ow):
            w0, w1, _ = _pool_window(j, sw, pw, kw, w)
            window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            a = window.argmax(axis=2)
            y[:, :, i, j] = np.take_along_axis(window, a[..., None], axis=2)[..., 0]
            argmax[:, :, i, j] = (h0 + a // (w1 - w0)) * w + (w0 + a % (w1 - w0))
    return y, argmax


def max_pool_backward(gy, argmax, x_shape):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    rows = np.repeat(np.arange(n * c), gy.shape[2] * gy.shape[3])
    np.add.at(gx, (rows, argmax.reshape(-1)), gy.reshape(-1))
    return gx.reshape(x_shape)


def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        h0, h1, dh = _pool_window(i, sh, ph, kh, h)
        for j in range(ow):
            w0, w1, dw = _pool_window(j, sw, pw, kw, w)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / (dh * dw)
    return y


def avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw):
    h, w = x_shape[2:]
    gx = np.zeros(x_shape, dtype=gy.dtype)
    for i in range(gy.shape[2]):
        h0, h1, dh = _pool_window(i, sh, ph, kh, h)
        for j in range(gy.shape[3]):
            w0, w1, dw = _pool_window(j, sw, pw, kw, w)
            gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] / (dh * dw)
    return gx


def _lrn_window(c, size, channels):
    """Channels in output c's window: c - size//2 ... c + (size-1)//2, clipped (PyTorch's, also for even size)."""
    return range(max(c - size // 2, 0), min(c + (size - 1) // 2, channels - 1) + 1)


def lrn_forward(x, size, alpha, beta, k):
    scale = np.empty_like(x)
    for c in range(x.shape[1]):
        scale[:, c] = k + alpha * sum(x[:, cc] ** 2 for cc in _lrn_window(c, size, x.shape[1]))
    return x * scale ** -beta, scale


def lrn_backward(x, y, scale, gy, size, alpha, beta, k):
    # d y_c / d x_j = [c == j] scale_c^-beta - 2 alpha beta x_j y_c / scale_c   for j in window(c)
    gx = gy * scale ** -beta
    for c in range(x.shape[1]):
        for j in _lrn_window(c, size, x.shape[1]):
            gx[:, j] -= 2 * alpha * beta * x[:, j] * gy[:, c] * y[:, c] / scale[:, c]
    return gx


# ==== ReLU backward, SGD and batch norm (array expressions; cpu.py uses these as they are) ====


def relu_forward(x):
    """x -> y = x * (x > 0), saved (here the bool mask x > 0)."""
    mask = x > 0
    return x * mask, mask


def relu_backward(saved, gy):
    """gy where x > 0, else 0; ``saved`` from relu_forward."""
    return gy * saved


def sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    """In place: p -= lr * d, d = g + weight_decay * p through the momentum buffer v (v = mu v + d).

    v: the buffer of the previous step, or None on the first (then it starts as d). Returns v
    (None without momentum). Array expressions only, so NumPy and CuPy arrays both work.
    """
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if v is None:
            v = g.copy()
        else:
            v *= momentum
            v += g
        g = g + momentum * v if nesterov else v
    p -= lr * g
    return v


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x (N, C, L) -> y (N, C, L), saved (for batch_norm_backward; here xhat and inv_std).

    training: batch mean and biased variance per channel; the running buffers (or None) are
    updated in place, r = (1 - momentum) r + momentum * stat, the variance unbiased (m / (m - 1)).
    Otherwise the running buffers normalise. weight, bias: (C,) or None.
    """
    c = x.shape[1]
    if training:
        mean = x.mean(axis=(0, 2))
        var = x.var(axis=(0, 2))
        m = x.size // c
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * var * (m / (m - 1))).astype(running_var.dtype)
    else:
        mean = running_mean.astype(x.dtype)
        var = running_var.astype(x.dtype)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    y = xhat * weight[:, None] if weight is not None else xhat
    if bias is not None:
        y = y + bias[:, None]
    return y, (xhat, inv_std)


def batch_norm_backward(gy, saved, weight, training, need_gb=True):
    """gy (N, C, L) -> gx (N, C, L), gweight (C,) or None (no weight), gbias (C,) or None (not needed)."""
    xhat, inv_std = saved
    gxhat = gy * weight[:, None] if weight is not None else gy
    if training:
        # mean and var depend on x too: gx = inv_std * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
        gx = inv_std[:, None] * (gxhat - gxhat.mean(axis=(0, 2), keepdims=True)
                                 - xhat * (gxhat * xhat).mean(axis=(0, 2), keepdims=True))
    else:
        gx = gxhat * inv_std[:, None]
    gw = (gy * xhat).sum(axis=(0, 2)) if weight is not None else None
    gb = gy.sum(axis=(0, 2)) if need_gb else None
    return gx, gw, gb
