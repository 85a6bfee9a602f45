"""Batch normalisation with statistics over the whole distributed batch.

By default each rank normalises with its own batch's statistics (as the ResNet paper's multi-GPU
training did: BN over 32 images per GPU). ``convert_sync_batchnorm(model)`` makes every
BatchNorm2d use the mean and variance over all ranks' images instead, which matters when the
per-rank batch is small. Forward all-reduces per-channel sums; backward all-reduces the two
per-channel sums the input gradient needs. With data-parallel gradient averaging on top, the
result equals plain BatchNorm on the combined batch.
"""
import numpy as np

from minidl import backend
from minidl import distributed as dist
from minidl.autograd import Function
from minidl.nn.layers import BatchNorm2d


def _allreduce_sum(a, comm):
    """Sum of the raw array ``a`` over ranks (host staging for CuPy arrays)."""
    host = np.array(backend.as_numpy(a), copy=True, order="C")
    comm.Allreduce(dist.mpi().IN_PLACE, host, op=dist.mpi().SUM)
    return backend.to_device(host, backend.device_of(a))


class SyncBatchNorm(Function):
    """Training-mode batch norm of x (N, C, ...) with weight, bias (C,), statistics over all ranks.

    y = (x - mean) * inv_std * weight + bias; mean, var over (N, H, W) of every rank's x.
    Running buffers updated in place with the unbiased global variance.
    """

    def __init__(self, running_mean, running_var, momentum, eps, comm):
        self.running_mean, self.running_var = running_mean, running_var
        self.momentum, self.eps, self.comm = momentum, eps, comm

    def forward(self, x, weight, bias):
        xp = backend.xp_of(x)
        c = x.shape[1]
        self.axes = (0,) + tuple(range(2, x.ndim))
        self.bshape = (1, c) + (1,) * (x.ndim - 2)
        local = xp.concatenate([x.sum(axis=self.axes), xp.asarray([x.size // c], dtype=x.dtype)])
        sums = _allreduce_sum(local, self.comm)
        self.m = float(sums[-1])                        # values per channel over all ranks
        if self.m < 2:  # every rank sees the same m, so all of them raise (none is left waiting)
            raise ValueError(f"SyncBatchNorm2d: training needs more than 1 value per channel over all "
                             f"{self.comm.Get_size()} ranks, got {int(self.m)} (input shape {tuple(x.shape)} "
                             f"on this rank)")
        mean = sums[:-1] / self.m
        centred = x - mean.reshape(self.bshape)
        var = _allreduce_sum((centred * centred).sum(axis=self.axes), self.comm) / self.m  # biased
        if self.running_mean is not None:
            self.running_mean *= 1 - self.momentum
            self.running_mean += (self.momentum * mean).astype(self.running_mean.dtype)
            self.running_var *= 1 - self.momentum
            unbiased = var * (self.m / (self.m - 1))
            self.running_var += (self.momentum * unbiased).astype(self.running_var.dtype)
        self.inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype)
        self.xhat = centred * self.inv_std.reshape(self.bshape)
        self.weight = weight
        return self.xhat * weight.reshape(self.bshape) + bias.reshape(self.bshape)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        gxhat = gy * self.weight.reshape(self.bshape)
        local = xp.concatenate([gxhat.sum(axis=self.axes), (gxhat * self.xhat).sum(axis=self.axes)])
        sums = _allreduce_sum(local, self.comm) / self.m  # global means of gxhat and gxhat * xhat
        c = gy.shape[1]
        mean_g, mean_gx = sums[:c].reshape(self.bshape), sums[c:].reshape(self.bshape)
        gx = self.inv_std.reshape(self.bshape) * (gxhat - mean_g - self.xhat * mean_gx)
        # weight and bias: this rank's share; data-parallel averaging combines the ranks
        return gx, (gy * self.xhat).sum(axis=self.axes), gy.sum(axis=self.axes)


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training statistics come from every rank's batch (same parameters,
    buffers and state-dict keys; evaluation uses the running buffers as usual)."""

    comm = None

    def forward(self, x):
        comm = self.comm or dist.get_comm()
        if not self.training or comm.Get_size() == 1:  # its own communicator's size, not the world's
            return super().forward(x)
        if x.ndim != 4:
            raise ValueError(f"SyncBatchNorm2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        self.num_batches_tracked += 1
        return SyncBatchNorm(self.running_mean, self.running_var, self.momentum, self.eps, comm)(
            x, self.weight, self.bias)


def convert_sync_batchnorm(module, comm=None):
    """Turn every BatchNorm2d inside ``module`` into a SyncBatchNorm2d, in place (returns ``module``)."""
    for m in module.modules():
        if isinstance(m, BatchNorm2d) and not isinstance(m, SyncBatchNorm2d):
            m.__class__ = SyncBatchNorm2d
            if comm is not None:
                object.__setattr__(m, "comm", comm)
    return module

