"""Data parallelism: every rank holds the whole model and sees its own share of each batch.

The recipe of Horovod / ChainerMN / PyTorch DDP:

1. At the start, rank 0's parameters and buffers are broadcast, so every rank starts identical.
2. Each rank runs forward and backward on its own B images.
3. The gradients are averaged over ranks with MPI all-reduce. Averaging N gradients of the mean
   loss over B images gives the gradient of the mean loss over all N*B images: N ranks with batch B
   take exactly the step one process with batch N*B would.

Sending one message per parameter wastes time on per-message latency, so gradients are packed into
a few flat *buckets* of a few MB. Backward produces gradients from the last layer to the first;
a bucket whose gradients are all done is all-reduced with non-blocking ``Iallreduce`` while
backward goes on computing earlier layers (communication overlapped with computation). Buckets
are filled in reverse parameter order and started strictly in bucket order, so every rank issues
the same collectives in the same order. ``step(optimizer)`` waits for one bucket at a time and
updates that bucket's parameters before waiting for the next.
"""
import time

import numpy as np

from minidl import backend
from minidl import distributed as dist


def broadcast_module(module, comm=None, root=0):
    """Overwrite every parameter and buffer of ``module`` with rank ``root``'s values."""
    comm = comm or dist.get_comm()
    if comm.Get_size() == 1:
        return module
    for p in module.parameters():
        p.data = _bcast(p.data, comm, root)
    for _, m, bname in list(module.named_buffers()):
        object.__setattr__(m, bname, _bcast(getattr(m, bname), comm, root))
    return module


def _bcast(a, comm, root):
    host = np.array(backend.as_numpy(a), copy=True, order="C")
    comm.Bcast(host.reshape(-1), root=root)
    return backend.to_device(host, backend.device_of(a))


class _Bucket:
    """A group of parameters (one dtype) whose gradients travel as one flat array."""

    def __init__(self, params):
        self.params = params
        self.dtype = params[0].dtype
        self.sizes = [p.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.ready = set()     # ids of parameters whose gradient is complete in this backward
        self.flat = None       # the packed gradients while the all-reduce runs
        self.request = None    # the MPI request of a started Iallreduce
        self.done = False

    @property
    def nbytes(self):
        return int(self.offsets[-1]) * np.dtype(self.dtype).itemsize

    def pack(self):
        """Copy the gradients into one fresh host array (zeros for a parameter that got none), followed
        by one 1/0 flag per parameter: did this rank have a gradient for it?"""
        n = int(self.offsets[-1])
        flat = np.empty(n + len(self.params), dtype=self.dtype)
        for i, (p, a, b) in enumerate(zip(self.params, self.offsets[:-1], self.offsets[1:])):
            flat[a:b] = backend.as_numpy(p.grad).reshape(-1) if p.grad is not None else 0
            flat[n + i] = p.grad is not None
        self.flat = flat
        return flat

    def unpack(self, world):
        """Divide by the number of ranks and hand each parameter its averaged gradient (None where
        no rank had one, as after a backward that did not reach the parameter)."""
        flat, n = self.flat, int(self.offsets[-1])
        flat[:n] /= world
        for i, (p, a, b) in enumerate(zip(self.params, self.offsets[:-1], self.offsets[1:])):
            p.grad = backend.to_device(flat[a:b].reshape(p.shape), p.device) if flat[n + i] else None

    def reset(self):
        self.ready.clear()
        self.flat = self.request = None
        self.done = False


def make_buckets(params, bucket_bytes):
    """Split ``params`` (in the order given) into buckets of at most ``bucket_bytes`` (a parameter
    larger than that gets a bucket of its own), never mixing dtypes."""
    buckets, cur, size = [], [], 0
    for p in params:
        nbytes = p.size * p.dtype.itemsize
        if cur and (size + nbytes > bucket_bytes or p.dtype != cur[0].dtype):
            buckets.append(_Bucket(cur))
            cur, size = [], 0
        cur.append(p)
        size += nbytes
    if cur:
        buckets.append(_Bucket(cur))
    return buckets


def average_gradients(params, comm=None, bucket_mb=4.0):
    """Blocking version: average the ``.grad`` of ``params`` over ranks, bucket by bucket."""
    comm = comm or dist.get_comm()
    world = comm.Get_size()
    if world == 1:
        return
    MPI = dist.mpi()
    for b in make_buckets([p for p in params if p.requires_grad], bucket_mb * 2 ** 20):
        comm.Allreduce(MPI.IN_PLACE, b.pack(), op=MPI.SUM)
        b.unpack(world)


class DataParallel:
    """Average gradients of ``module`` over the ranks of ``comm`` (see the module docstring).

    dp = DataParallel(model)        # broadcasts rank 0's parameters and buffers
    loss = F.cross_entropy(dp(x), t); loss.backward()   # buckets start all-reducing during backward
    dp.step(optimizer)              # wait bucket by bucket, update; or dp.synchronize(); optimizer.step()

    bucket_mb: bucket size cap in MiB. overlap: start each bucket's all-reduce from the gradient
    hooks while backward runs (False: one blocking all-reduce per bucket after backward).
    ``comm_seconds`` adds up the time this rank spent in MPI calls and packing that backward could not
    hide, ``steps`` the number of synchronised steps (for benchmarks).
    One backward per step: gradients accumulated over several backward passes are not supported.
    A parameter that backward does not reach keeps ``grad=None`` (on every rank); from the next step
    on it is taken to be unused again, so its bucket does not hold up the others (a parameter that
    becomes used later raises an error that says to use ``overlap=False``).
    """

    def __init__(self, module, comm=None, bucket_mb=4.0, overlap=True, broadcast=True):
        self.module = module
        self.comm = comm or dist.get_comm()
        self.world = self.comm.Get_size()
        self.overlap = overlap
        self.params = [p for p in module.parameters() if p.requires_grad]
        if broadcast:
            broadcast_module(module, self.comm)
        self.buckets = make_buckets(list(reversed(self.params)), bucket_mb * 2 ** 20)
        self._bucket_of = {id(p): b for b in self.buckets for p in b.params}
        self._next = 0  # index of the next bucket to start (buckets start in order)
        self._fired = set()  # ids of the parameters whose gradient hook ran in this backward
        self.comm_seconds, self.steps = 0.0, 0
        self._removers = [p.register_grad_hook(self._grad_ready) for p in self.params] if self.world > 1 else []

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def remove_hooks(self):
        for r in self._removers:
            r()
        self._removers = []

    # ---- during backward ----------------------------------------------------------------------------
    def _grad_ready(self, p):
        if not self.overlap:
            return
        t0 = time.perf_counter()
        b = self._bucket_of[id(p)]
        if b.request is not None:
            name = next((n for n, q in self.module.named_parameters() if q is p), "?")
            raise RuntimeError(f"DataParallel: parameter {name} got a gradient after its bucket had been sent "
                               "(it was unused in the previous step, and the graph changed); "
                               "use DataParallel(..., overlap=False) for models whose graph changes")
        b.ready.add(id(p))
        self._fired.add(id(p))
        while self._next < len(self.buckets) and \
                len(self.buckets[self._next].ready) == len(self.buckets[self._next].params):
            self._start(self.buckets[self._next])
        started = [b.request for b in self.buckets[:self._next] if b.request is not None]
        if started:
            dist.mpi().Request.Testall(started)  # lets MPI progress the reductions already started
        self.comm_seconds += time.perf_counter() - t0

    def _start(self, b):
        MPI = dist.mpi()
        b.request = self.comm.Iallreduce(MPI.IN_PLACE, b.pack(), op=MPI.SUM)
        self._next += 1

    # ---- after backward -----------------------------------------------------------------------------
    def _finish(self, b):
        """Make bucket ``b``'s averaged gradients available (starting any bucket not started yet)."""
        if b.done:
            return
        MPI = dist.mpi()
        if self.overlap:
            while self._next <= self.buckets.index(b):  # a hook never fired (an unused parameter)
                self._start(self.buckets[self._next])
            b.request.Wait()
        else:
            self.comm.Allreduce(MPI.IN_PLACE, b.pack(), op=MPI.SUM)
        b.unpack(self.world)
        b.done = True

    def _reset(self):
        # parameters that backward did not reach this step count as ready from the start of the next,
        # so that their buckets (and all later ones) can still start during backward
        unused = [p for p in self.params if id(p) not in self._fired] if self.overlap else []
        self._fired.clear()
        for b in self.buckets:
            b.reset()
        for p in unused:
            self._bucket_of[id(p)].ready.add(id(p))
        self._next = 0
        self.steps += 1

    def synchronize(self):
        """Wait for every bucket; afterwards every parameter's ``.grad`` is the average over ranks."""
        if self.world == 1:
            return
        t0 = time.perf_counter()
        for b in self.buckets:
            self._finish(b)
        self._reset()
        self.comm_seconds += time.perf_counter() - t0

    def step(self, optimizer):
        """``optimizer.step()`` with averaged gradients, each bucket's parameters updated as soon as
        that bucket has arrived (for SGD, whose update of one parameter needs nothing of the others)."""
        from minidl.optim import SGD
        if self.world == 1:
            return optimizer.step()
        if not isinstance(optimizer, SGD):
            self.synchronize()
            return optimizer.step()
        owned = {id(p) for p in optimizer.params}
        all_params = optimizer.params
        try:
            for b in self.buckets:
                t0 = time.perf_counter()
                self._finish(b)
                self.comm_seconds += time.perf_counter() - t0
                optimizer.params = [p for p in b.params if id(p) in owned]
                if optimizer.params:
                    optimizer.step()
            rest = [p for p in all_params if id(p) not in self._bucket_of]  # not trained through here
            if rest:
                optimizer.params = rest
                optimizer.step()
        finally:
            optimizer.params = all_params
        self._reset()

    def bucket_sizes(self):
        """Bytes per bucket, in the order they are all-reduced."""
        return [b.nbytes for b in self.buckets]


class DistributedOptimizer:
    """An optimiser whose ``step()`` is ``dp.step(optimizer)``: for training loops that call
    ``optimizer.step()`` themselves. Every other attribute (``lr``, ``state_dict`` …) is the wrapped
    optimiser's, so learning-rate schedules work unchanged."""

    def __init__(self, optimizer, dp):
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "dp", dp)

    def step(self):
        return self.dp.step(self.optimizer)

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.optimizer, name, value)


def scale_lr(lr, world, rule="linear"):
    """Goyal et al. (2017): with a batch k times larger, multiply the learning rate by k ("linear");
    "none" keeps it. Here k is the number of ranks (each keeps its own batch size)."""
    if rule == "linear":
        return lr * world
    if rule == "none":
        return lr
    raise ValueError(f"scale_lr: rule must be 'linear' or 'none', got {rule!r}")
