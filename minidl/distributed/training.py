"""What ``minidl train --distributed`` adds to a training run (called from minidl.cli.run_training).

Every rank builds the same model, data and optimiser; then ``prepare`` makes them one job:
rank 0's weights are broadcast, the training loader yields each rank its share of every epoch,
gradients are averaged in overlapped buckets, and the learning rate follows the linear scaling
rule (Goyal et al., 2017) with an optional gradual warm-up. Rank 0 alone prints and writes files
(``DataParallelReplica``, the Trainer's one object for all of this); every rank can resume from
the same checkpoint.
"""
from minidl import optim, random
from minidl import distributed as dist
from minidl.train import Replica


class DataParallelReplica(Replica):
    """One rank of a data-parallel run, as the Trainer sees it: rank 0 alone prints and writes;
    the lr was multiplied by ``lr_factor`` (linear scaling); the epoch schedule steps with rank 0's
    held-out error. Gradients need no hook here: ``prepare``'s optimiser waits for their average."""

    def __init__(self, lr_scaling="linear", comm=None):
        self.comm = comm or dist.get_comm()
        self.world_size = self.comm.Get_size()
        self.is_main = self.comm.Get_rank() == 0
        self.lr_factor = self.world_size if lr_scaling == "linear" else 1

    def shared_metric(self, value):
        return rank0_value(value, self.comm)


def silent(*args, **kwargs):
    pass


def shared_run_dir(make_dir, out, resume):
    """Rank 0 picks (and creates) the run folder, every rank gets its name (or rank 0's error)."""
    comm = dist.get_comm()
    path = error = None
    if comm.Get_rank() == 0:
        try:
            path = make_dir(out, resume)
        except Exception as e:  # raised on every rank below, so none is left waiting
            error = e
    path, error = comm.bcast((path, error), root=0)
    if error is not None:
        raise error
    return path


def prepare(model, optimizer, train_loader, sync_batchnorm=False, lr_scaling="linear", bucket_mb=4.0,
            overlap=True):
    """Make one rank's model/optimiser/loader part of the job; returns the optimiser to train with
    (``step()`` waits for the averaged gradients bucket by bucket)."""
    comm = dist.init()
    # Same seed everywhere gave the same initial weights; from here each rank draws its own dropout
    # masks (rank 0 keeps the stream a single process would have).
    random.fold_in(comm.Get_rank())
    if sync_batchnorm:
        dist.convert_sync_batchnorm(model, comm)
    dp = dist.DataParallel(model, comm, bucket_mb=bucket_mb, overlap=overlap)
    dist.shard_loader(train_loader, comm)
    optimizer.lr = dist.scale_lr(optimizer.lr, comm.Get_size(), lr_scaling)
    return dist.DistributedOptimizer(optimizer, dp)


def warmup(optimizer, warmup_epochs, steps_per_epoch, world):
    """Gradual warm-up (Goyal et al.): the rate climbs linearly from lr/world (lr/10 on one process)
    to lr over ``warmup_epochs`` epochs; None when ``warmup_epochs`` is 0."""
    if not warmup_epochs:
        return None
    start = 1.0 / world if world > 1 else 0.1
    return optim.WarmupLR(optimizer, int(round(warmup_epochs * steps_per_epoch)), start_factor=start)


def rank0_value(value, comm=None):
    """Rank 0's ``value`` on every rank. With per-rank BatchNorm statistics each rank measures its
    own held-out error; the epoch schedule must step with one value, or a plateau schedule would
    lower the rate on some ranks only and their weights would drift apart."""
    return (comm or dist.get_comm()).bcast(value, root=0)
