# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Beyond one machine: data parallel and AlexNet's two towers on MPI
#
# AlexNet was trained on two GTX 580 GPUs, and ImageNet-scale training soon outgrew one machine.
# There are two ways to spread one training run over several processes (*ranks*):
#
# - **data parallel** — every rank holds the whole model and sees its own slice of each batch; after
#   backward the ranks *average their gradients* (an all-reduce), so all replicas take the same step.
#   This is Horovod, ChainerMN, PyTorch DDP, and "ImageNet in 1 hour" (Goyal et al., 2017).
# - **model parallel** — every rank holds *part* of the model and the ranks pass activations (and, in
#   backward, their gradients) to each other. This is what the AlexNet paper did: one tower per GPU.
#
# minidl uses MPI, the standard of supercomputers, through `mpi4py`: `mpiexec -n 2 python3 script.py`
# starts two copies of a script, and `minidl.distributed` joins them. This notebook starts its ranks
# with `subprocess` (a notebook kernel is one process), so each experiment is a small script.

# %%
import os, sys, json, tempfile, textwrap, time
sys.path.insert(0, os.path.abspath(".."))     # minidl from this checkout, even without pip install -e .
import numpy as np
import minidl as md
from minidl import nn, functional as F, optim, models
from minidl import distributed as dist
from lessonlib import FAST, pick, digits, error_of

REASON = dist.unavailable_reason()             # None when mpi4py and mpiexec are usable
print("MPI:", "ready" if REASON is None else REASON)
WORK = tempfile.mkdtemp(prefix="minidl-lesson09-")

def run_on_ranks(n, source, *args, timeout=120):
    """Write `source` to a script and run it on n ranks; return rank 0's printed lines."""
    path = os.path.join(WORK, "script.py")
    with open(path, "w") as f:
        f.write(f"import sys; sys.path.insert(0, {os.path.abspath('..')!r})\n" + textwrap.dedent(source))
    cmd = [sys.executable, path, *map(str, args)]   # this kernel's interpreter on every rank
    print("$", " ".join(os.path.basename(a) if a in (path, sys.executable) else a
                        for a in dist.mpiexec_command(n, cmd)))
    out = dist.run_ranks(n, cmd, timeout=timeout)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout


# %% [markdown]
# ## Two ranks, one gradient
#
# Each rank computes the mean loss over its own B images. The average of the two ranks' gradients is
# the gradient of the mean loss over all 2B images, so **2 ranks with batch B take exactly the step of
# one process with batch 2B**. `DataParallel` first broadcasts rank 0's weights (every replica starts
# the same), then averages gradients in a few flat *buckets*; a bucket is sent (non-blocking
# `Iallreduce`) as soon as backward has finished its gradients, while backward goes on with earlier
# layers. The script below trains on both ranks, and rank 0 replays the same steps alone with the
# doubled batch.

# %%
DP_SCRIPT = """
import numpy as np, minidl as md
from minidl import nn, optim, functional as F, distributed as dist
comm = dist.init(); r, world = comm.Get_rank(), comm.Get_size()

def net(seed):
    md.manual_seed(seed)
    m = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
    for p in m.parameters(): p.data = p.data.astype(np.float64)
    return m

def batch(step, n):
    g = np.random.default_rng(step)
    return g.standard_normal((n, 20)), g.integers(0, 10, n)

B = 16
model = net(seed=r)                      # different on purpose: the broadcast makes them equal
dp = dist.DataParallel(model, bucket_mb=0.002)
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(5):
    x, t = batch(step, world * B)
    mine = slice(r * B, (r + 1) * B)     # this rank's half of the batch
    opt.zero_grad()
    F.cross_entropy(dp(md.tensor(x[mine])), t[mine]).backward()   # buckets start during backward
    dp.step(opt)                         # wait bucket by bucket, update what has arrived

if r == 0:
    ref = net(seed=0); ref_opt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for step in range(5):
        x, t = batch(step, world * B)
        ref_opt.zero_grad(); F.cross_entropy(ref(md.tensor(x)), t).backward(); ref_opt.step()
    err = max(np.abs(p.data - q.data).max() for p, q in zip(model.parameters(), ref.parameters()))
    print(f"{world} ranks x batch {B} vs 1 process x batch {world * B}: max weight difference {err:.1e}")
    print(f"buckets (bytes, in all-reduce order): {dp.bucket_sizes()}")
"""
if REASON is None:
    print(run_on_ranks(2, DP_SCRIPT))

# %% [markdown]
# The difference is rounding noise (float64): data parallelism changes *where* the arithmetic runs,
# not what is computed. Two more pieces make it a training run:
#
# - `DistributedSampler` (or `shard_loader` for minidl's `DataLoader`) gives every rank an equal share
#   of each epoch's seeded permutation — the permutation is the same on every rank, so no
#   communication is needed to agree on it.
# - BatchNorm normalises with each rank's own batch (as the ResNet paper's multi-GPU runs did);
#   `convert_sync_batchnorm(model)` makes the statistics span all ranks.

# %%
for rank in range(2):
    s = dist.DistributedSampler(10, num_replicas=2, rank=rank, seed=0)
    print(f"rank {rank}: epoch 0 {list(s)}", end="   ")
    s.set_epoch(1)
    print(f"epoch 1 {list(s)}")

# %% [markdown]
# ## The scaling rule
#
# With k ranks the batch is k times larger, so one epoch has k times fewer steps. Goyal et al. (2017)
# keep the accuracy with the **linear scaling rule** — multiply the learning rate by k — and a
# **gradual warm-up**, since a large rate early on diverges: start at lr/k and raise it linearly over
# the first epochs (they used 5). We can see the rule without MPI: one process with batch kB *is* k
# ranks with batch B. Below, a small MLP on 16×16 digits: batch 16 at lr 0.01 (the baseline), batch 128
# (8 ranks' worth) at the same lr, and batch 128 with lr × 8 and warm-up, each for the same number of epochs.

# %%
xtr, ytr, xva, yva = digits(None, pick(500, None), size=16)
xtr, xva = xtr.reshape(len(xtr), -1), xva.reshape(len(xva), -1)     # 16x16 digits as 256 inputs

def small_net():
    md.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))

def run(batch, lr, warmup_epochs=0, epochs=pick(3, 5)):
    net = small_net()
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    steps_per_epoch = len(xtr) // batch
    warm = optim.WarmupLR(opt, warmup_epochs * steps_per_epoch, start_factor=0.25) if warmup_epochs else None
    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        order = rng.permutation(len(xtr))
        for s in range(steps_per_epoch):
            i = order[s * batch:(s + 1) * batch]
            opt.zero_grad()
            F.cross_entropy(net(md.tensor(xtr[i])), ytr[i]).backward()
            opt.step()
            if warm: warm.step()
    return error_of(net, xva, yva)

for name, batch, lr, warm in [("batch 16, lr 0.01 (one rank)", 16, 0.01, 0),
                              ("batch 128, lr 0.01 (8 ranks, no scaling)", 128, 0.01, 0),
                              ("batch 128, lr 0.08 + 1 epoch warm-up (8 ranks, linear rule)", 128, 0.08, 1)]:
    print(f"{name:60s} held-out error {100 * run(batch, lr, warm):5.1f}%")

# %% [markdown]
# Without scaling, the large batch takes 8× fewer steps of the same size and falls behind; with the
# rule it takes 8× fewer but 8× larger steps and (nearly) catches up. In `minidl train` these are options:
# `--lr-scaling linear` and `--warmup-epochs`.
#
# ## What communication costs
#
# Per step, data parallelism all-reduces every gradient: for AlexNet's 61 M parameters that is 244 MB
# (float32), and a ring all-reduce sends and receives about 2(k−1)/k of it per rank. The two-tower
# model exchanges *activations* instead, only where the towers meet. Counting both for a batch of 128:

# %%
alex = models.alexnet()
grad_bytes = 4 * alex.num_parameters()
batch = 128
# activations that cross between the towers (each rank sends its half, both ways in backward):
crossing = {"pool2 -> conv3": 256 * 13 * 13, "pool5 -> fc6": 256 * 6 * 6,
            "fc6 -> fc7": 4096, "fc7 -> fc8 (partial logits)": 1000}
act_bytes = sum(4 * batch * n for n in crossing.values())
print(f"data parallel, gradients per step: {grad_bytes / 1e6:7.1f} MB")
for k, n in crossing.items():
    print(f"  two towers, {k:28s} {4 * batch * n / 1e6:6.2f} MB")
print(f"two towers, all exchanges:         {act_bytes / 1e6:7.1f} MB forward (the same again backward)")

# %% [markdown]
# The convolutions hold 6% of the weights but do 90% of the arithmetic; the FC layers are the other way
# round. So sending activations (the towers) is cheap where the weights are many, and sending weights'
# gradients (data parallel) is cheap where the activations are many — Krizhevsky's "one weird trick"
# (2014) combined the two. Let us measure on this machine: the time of one forward+backward of a
# CIFAR-size net against one all-reduce of its gradients, on 2 ranks.

# %%
COST_SCRIPT = """
import sys, time, numpy as np, minidl as md
from minidl import nn, functional as F, distributed as dist
comm = dist.init()
batch = int(sys.argv[1])
md.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2048, 10))
x = md.tensor(np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32))
t = np.zeros(batch, dtype=np.int64)
def compute():
    net.zero_grad(); F.cross_entropy(net(x), t).backward()
def communicate():
    dist.average_gradients(net.parameters(), comm)
timings = {}
for name, fn in (("compute", compute), ("communicate", communicate)):
    fn(); comm.Barrier(); t0 = time.perf_counter()
    for _ in range(3): fn()
    comm.Barrier(); timings[name] = (time.perf_counter() - t0) / 3
if comm.Get_rank() == 0:
    nbytes = 4 * sum(p.size for p in net.parameters())
    print(f"forward+backward, {batch} images per rank: {1e3 * timings['compute']:7.1f} ms")
    print(f"all-reduce of {nbytes / 1e3:.0f} kB of gradients:  {1e3 * timings['communicate']:7.1f} ms"
          f"  ({100 * timings['communicate'] / timings['compute']:.1f}% of the compute)")
"""
if REASON is None:
    print(run_on_ranks(2, COST_SCRIPT, pick(16, 128)))

# %% [markdown]
# Within one machine the all-reduce goes through shared memory and is a small fraction of a step; across
# machines it crosses the network, which is why the buckets start during backward (the benchmark
# `benchmarks/distributed.py` times both ways). `minidl train --distributed` runs the whole training
# command this way: `mpiexec -n 2 minidl train --distributed ...`, rank 0 alone printing and writing.
#
# ## AlexNet's two towers on two ranks
#
# `minidl.distributed.towers.two_tower_alexnet()` cuts the grouped single-process model in two: rank r
# keeps group r of conv2/4/5, half the filters of conv1/3 and half the units of fc6/7, and the ranks
# exchange activations only where the paper's GPUs did — `all_gather` into conv3 and into fc6 and fc7,
# and an `all_reduce` that adds the two halves of fc8. These collectives are autograd Functions: the
# all-gather's backward is a reduce-scatter of the gradient, the all-reduce's passes it through. (The
# grouped model normalises LRN across all channels, as Caffe's AlexNet does; so the towers also swap
# the two edge maps each LRN needs from the other side. The paper's GPUs each normalised their own.)
# Below, a narrow AlexNet (width 1/16, float64) on two ranks against the same weights in one process:

# %%
TOWER_SCRIPT = """
import numpy as np, minidl as md
from minidl import models, functional as F, distributed as dist
comm = dist.init()
md.manual_seed(0)
grouped = models.alexnet(num_classes=10, width=1 / 16, dropout=0.0)     # the single-process model
for p in grouped.parameters(): p.data = p.data.astype(np.float64)
from minidl.distributed.towers import tower_alexnet
tower = tower_alexnet(grouped)            # what two_tower_alexnet() returns on each rank (from models.alexnet())
x = np.random.default_rng(0).standard_normal((2, 3, 227, 227)); t = np.array([3, 7])
loss = F.cross_entropy(tower(md.tensor(x)), t); loss.backward()
grads = tower.gather_full("grad")         # both towers' gradients in the grouped model's shapes
if comm.Get_rank() == 0:
    print("layers that wait for the other tower:", [name for name, how in tower.plan if how != "local"])
    print(f"parameters: grouped {grouped.num_parameters():,}, this rank's tower {tower.num_parameters():,}")
    ref = F.cross_entropy(grouped(md.tensor(x)), t); ref.backward()
    full = dict(grouped.named_parameters())
    worst = max(np.abs(g - full[k].grad).max() / np.abs(full[k].grad).max() for k, g in grads.items())
    print(f"loss: two towers {loss.item():.12f}, one process {ref.item():.12f}")
    print(f"largest relative gradient difference over all parameters: {worst:.1e}")
"""
if REASON is None:
    print(run_on_ranks(2, TOWER_SCRIPT))

# %% [markdown]
# Same loss, same gradients: the towers are the grouped model, computed on two processes. On the
# paper's hardware each GPU held 3 GB, and the full net (plus activations for 128 images) did not fit
# in one — the split was a necessity before it was a speed-up.
#
# **Faults.** A crashed rank must not leave the others waiting forever inside a collective:
# `dist.init()` installs an exception hook that prints `[minidl] rank R/N failed: …` and aborts the
# whole job, and a watchdog thread aborts when a peer stops answering.

# %%
CRASH_SCRIPT = """
from minidl import distributed as dist
comm = dist.init()
for step in range(5):
    if comm.Get_rank() == 1 and step == 3:
        raise RuntimeError(f"simulated failure at step {step}")
    comm.allreduce(step)
"""
if REASON is None:
    t0 = time.time()
    path = os.path.join(WORK, "crash.py")
    with open(path, "w") as f:
        f.write(f"import sys; sys.path.insert(0, {os.path.abspath('..')!r})\n" + CRASH_SCRIPT)
    out = dist.run_ranks(2, [sys.executable, path], timeout=60)
    print(f"exit status {out.returncode} after {time.time() - t0:.1f} s")
    print([line for line in out.stderr.splitlines() if line.startswith("[minidl]")][0])
