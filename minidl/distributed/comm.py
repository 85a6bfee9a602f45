"""Collective operations as autograd Functions, for model parallelism (each rank holds part of a model).

Forward and backward of each collective sit side by side, as for every other op:

- ``all_gather(x, axis=1)``: every rank contributes a slice, every rank gets the concatenation.
  Backward: each rank's downstream use of the whole is a *different* part of the loss, so the
  gradient of my slice is the sum over ranks of their gradients for it — a reduce-scatter.
- ``all_reduce(x)``: the sum of every rank's x, on every rank. Backward: every rank goes on to
  compute the *same* loss from the same sum (counted once), so the gradient passes back unchanged.
- ``send(x, dest)`` / ``recv(shape, src)``: point to point. The gradient travels the other way:
  the receiver's backward sends it back, the sender's backward receives it.

CuPy arrays go through host memory, unless mpi4py reports a CUDA-aware MPI, which reads device
memory directly. All ranks must call a collective in the same order, with the same shapes.
"""
import numpy as np

from minidl import backend
from minidl import distributed as dist
from minidl.autograd import Function, Tensor


def cuda_aware():
    """True when the MPI library says it can read CuPy (device) buffers itself."""
    query = getattr(dist.mpi(), "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:
        return False


def to_buffer(a):
    """A contiguous array MPI can read: the array itself on the host (or with a CUDA-aware MPI),
    else a host copy."""
    if backend._is_cupy_array(a):
        if cuda_aware():
            backend.cupy().cuda.get_current_stream().synchronize()
            return backend.cupy().ascontiguousarray(a)
        return a.get()
    return np.ascontiguousarray(a)


def empty_buffer(shape, dtype, like):
    """A buffer MPI can write, for data that ends up on ``like``'s device."""
    if backend._is_cupy_array(like) and cuda_aware():
        return backend.cupy().empty(shape, dtype)
    return np.empty(shape, dtype)


def from_buffer(buf, like):
    """``buf`` on the device of ``like``."""
    return backend.to_device(buf, backend.device_of(like))


class AllGather(Function):
    """Per rank x (…, C, …) -> (…, world*C, …): the ranks' x concatenated along ``axis`` in rank order."""

    def __init__(self, axis=1, comm=None):
        self.axis, self.comm = axis, comm or dist.get_comm()

    def forward(self, x):
        world = self.comm.Get_size()
        self.x_shape = x.shape
        parts = empty_buffer((world,) + x.shape, x.dtype, x)
        self.comm.Allgather(to_buffer(x), parts)
        out = np.concatenate(list(parts), axis=self.axis) if isinstance(parts, np.ndarray) else \
            backend.cupy().concatenate(list(parts), axis=self.axis)
        return from_buffer(out, x)

    def backward(self, gy):
        world = self.comm.Get_size()
        xp = backend.xp_of(gy)
        chunks = xp.stack(xp.split(gy, world, axis=self.axis))  # (world, *x_shape): chunk r goes to rank r
        mine = empty_buffer(self.x_shape, gy.dtype, gy)
        self.comm.Reduce_scatter_block(to_buffer(chunks), mine, op=dist.mpi().SUM)
        return from_buffer(mine, gy)


def all_gather(x, axis=1, comm=None):
    """Concatenate every rank's ``x`` along ``axis`` (channels by default); same shape on every rank."""
    return AllGather(axis, comm)(x)


class AllReduce(Function):
    """Per rank x -> sum over ranks of x (same shape), identical on every rank."""

    def __init__(self, comm=None):
        self.comm = comm or dist.get_comm()

    def forward(self, x):
        total = empty_buffer(x.shape, x.dtype, x)
        self.comm.Allreduce(to_buffer(x), total, op=dist.mpi().SUM)
        return from_buffer(total, x)

    def backward(self, gy):
        # each rank's loss downstream is the same single loss: d loss / d x_r = d loss / d sum
        return gy


def all_reduce(x, comm=None):
    """Sum ``x`` over ranks; for a result every rank then uses identically (the loss counted once)."""
    return AllReduce(comm)(x)


class Send(Function):
    """x -> a zero "token" scalar; add the token to the loss so backward reaches here and receives
    x's gradient from ``dest``."""

    def __init__(self, dest, tag=0, comm=None):
        self.dest, self.tag, self.comm = dest, tag, comm or dist.get_comm()

    def forward(self, x):
        self.comm.Send(to_buffer(x), dest=self.dest, tag=self.tag)
        # an empty array on x's device, not a view of x (a view would keep x's memory alive)
        self.x_shape, self.x_dtype, self.x_like = x.shape, x.dtype, backend.xp_of(x).empty(0, x.dtype)
        return backend.xp_of(x).zeros((), dtype=x.dtype)

    def backward(self, gtoken):
        gx = empty_buffer(self.x_shape, self.x_dtype, self.x_like)
        self.comm.Recv(gx, source=self.dest, tag=self.tag)
        return from_buffer(gx, self.x_like)


def send(x, dest, tag=0, comm=None):
    """Send ``x`` to rank ``dest``; returns a zero token to add to this rank's loss (its gradient
    comes back from ``dest`` during backward)."""
    return Send(dest, tag, comm)(x)


class Recv(Function):
    """(anchor) -> the array sent by ``src``. Backward sends the gradient back to ``src``."""

    def __init__(self, shape, dtype, src, tag=0, comm=None):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.src, self.tag, self.comm = src, tag, comm or dist.get_comm()

    def forward(self, anchor):
        y = empty_buffer(self.shape, self.dtype, anchor)
        self.comm.Recv(y, source=self.src, tag=self.tag)
        self.anchor = anchor
        return from_buffer(y, anchor)

    def backward(self, gy):
        self.comm.Send(to_buffer(gy), dest=self.src, tag=self.tag)
        return backend.xp_of(gy).zeros_like(self.anchor)


def recv(shape, src, dtype=np.float32, tag=0, device="cpu", comm=None):
    """Receive an array of ``shape``/``dtype`` from rank ``src`` as a Tensor that records the graph
    (its gradient is sent back to ``src`` in backward)."""
    anchor = Tensor(backend.to_device(np.zeros(0, dtype=dtype), device), requires_grad=True)
    return Recv(shape, dtype, src, tag, comm)(anchor)
