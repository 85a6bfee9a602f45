"""Shape ops: reshape, transpose, indexing, broadcasting, concat, flatten."""
import numpy as np

from minidl import backend
from minidl.autograd import Function, Tensor
from minidl.functional.math import sum_to


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x):
        if self.axes is not None and sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of {x.ndim} axes (shape {x.shape})")
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        inverse = np.argsort([a % gy.ndim for a in self.axes])
        return gy.transpose(tuple(inverse))


def _raw_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _index_on(xp, index):
    if isinstance(index, tuple):
        return tuple(xp.asarray(i) if isinstance(i, (np.ndarray, list)) else i for i in index)
    return xp.asarray(index) if isinstance(index, (np.ndarray, list)) else index


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))) for i in items)


class GetItem(Function):
    """x[index] for basic (slices, ints) and integer-array indexing; repeats accumulate in backward."""

    def __init__(self, index):
        self.index = _raw_index(index)

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        if backend.device_of(x) != "cpu":  # index arrays go to the data's device (cupy indexes with cupy)
            self.index = _index_on(backend.xp_of(x), self.index)
        return x[self.index]

    def backward(self, gy):
        xp = backend.xp_of(gy)
        gx = xp.zeros(self.in_shape, dtype=self.dtype)
        if _is_advanced(self.index):
            backend.scatter_add(gx, self.index, gy)
        else:
            gx[self.index] = gy
        return gx


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return backend.xp_of(x).broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {self.shape}") from None

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


class Concat(Function):
    """Join tensors along ``axis``; backward slices the gradient back into pieces."""

    def __init__(self, axis=1):
        self.axis = axis

    def forward(self, *xs):
        ref = xs[0]
        ax = self.axis % ref.ndim
        for i, x in enumerate(xs):
            if x.ndim != ref.ndim or any(x.shape[d] != ref.shape[d] for d in range(ref.ndim) if d != ax):
                raise ValueError(f"concat: input {i} has shape {x.shape}, incompatible with input 0 of shape "
                                 f"{ref.shape} along axis {self.axis}")
        self.sizes = [x.shape[ax] for x in xs]
        return backend.xp_of(*xs).concatenate(xs, axis=ax)

    def backward(self, gy):
        ax = self.axis % gy.ndim
        bounds = np.cumsum(self.sizes)[:-1]
        return tuple(backend.xp_of(gy).split(gy, bounds, axis=ax))


def reshape(x, shape):
    return Reshape(shape)(x)


def transpose(x, axes=None):
    return Transpose(axes)(x)


def getitem(x, index):
    return GetItem(index)(x)


def broadcast_to(x, shape):
    return BroadcastTo(shape)(x)


def concat(tensors, axis=1):
    """Concatenate a list of tensors along ``axis`` (channels by default, as in Inception)."""
    if len(tensors) == 0:
        raise ValueError("concat: needs at least one tensor")
    return Concat(axis)(*tensors)


def flatten(x, start_axis=1):
    """(N, C, H, W) -> (N, C*H*W): keeps the axes before ``start_axis``."""
    shape = x.shape[:start_axis] + (-1,)
    if x.size == 0:
        shape = x.shape[:start_axis] + (int(np.prod(x.shape[start_axis:])),)
    return reshape(x, shape)
