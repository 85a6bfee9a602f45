"""Programs the distributed tests run on 2 ranks (``mpiexec -n 2 <sys.executable> _workers.py CASE``).

Each case computes on every rank, compares on rank 0 against a single-process reference it
computes itself, and prints one ``RESULT {json}`` line there; the tests read and check it.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import minidl as md  # noqa: E402
from minidl import nn, optim, functional as F  # noqa: E402
from minidl import distributed as dist  # noqa: E402


def result(**values):
    if dist.is_main():
        print("RESULT " + json.dumps(values), flush=True)


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


class WithUnused(nn.Module):
    """An MLP plus a parameter forward never uses (backward never reaches it)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
        self.unused = nn.Parameter(np.ones(3))

    def forward(self, x):
        return self.net(x)


def mlp(seed):
    md.manual_seed(seed)
    net = WithUnused()
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    return net


def data(step, n):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((n, 8)), rng.integers(0, 4, n)


def case_data_parallel(overlap, steps=5, batch=6):
    """2 ranks x batch B with gradient averaging == 1 process with batch 2B (SGD, momentum, decay)."""
    comm = dist.init()
    r, world = comm.Get_rank(), comm.Get_size()
    net = mlp(seed=r)                     # different on each rank: the broadcast must fix that
    dp = dist.DataParallel(net, bucket_mb=2e-3, overlap=overlap)  # ~2 KB buckets: several per step
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    started_in_backward = []
    for step in range(steps):
        x, t = data(step, batch * world)
        mine = slice(r * batch, (r + 1) * batch)
        opt.zero_grad()
        F.cross_entropy(dp(md.tensor(x[mine])), t[mine]).backward()
        started_in_backward.append(dp._next)
        dp.step(opt)
    ref = mlp(seed=0)
    ref_opt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for step in range(steps):
        x, t = data(step, batch * world)
        ref_opt.zero_grad()
        F.cross_entropy(ref(md.tensor(x)), t).backward()
        ref_opt.step()
    errs = [rel_err(p.data, q.data) for p, q in zip(net.parameters(), ref.parameters())]
    others = comm.gather([p.data for p in net.parameters()], root=0)
    same = all(np.array_equal(a, b) for a, b in zip(others[0], others[-1])) if r == 0 else None
    moved = max(rel_err(p.data, q.data) for p, q in zip(net.parameters(), mlp(0).parameters()))
    result(max_rel_err=max(errs), ranks_identical=same, buckets=len(dp.buckets),
           started_in_backward=started_in_backward, moved=moved, unused_grad_is_none=net.unused.grad is None)


def case_sampler(n=23):
    comm = dist.init()
    s = dist.DistributedSampler(n, seed=3)
    out = {}
    for epoch in range(2):
        s.set_epoch(epoch)
        parts = comm.gather(list(s), root=0)
        if comm.Get_rank() == 0:
            out[epoch] = parts
    result(parts=out, per_rank=len(s))


def case_sync_bn(n=6, c=3):
    """Sync BN on 2 ranks == plain BN on the combined batch: outputs, input and parameter gradients."""
    comm = dist.init()
    r, world = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n * world, c, 4, 5)) * 3 + 1
    w = rng.standard_normal((n * world, c, 4, 5))   # loss = sum(y * w): a non-trivial gradient
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)

    def layer():
        bn = nn.BatchNorm2d(c)
        bn.weight.data, bn.bias.data = gamma.copy(), beta.copy()
        bn.running_mean, bn.running_var = np.zeros(c), np.ones(c)
        return bn

    mine = slice(r * n, (r + 1) * n)
    bn = dist.convert_sync_batchnorm(nn.Sequential(layer()))[0]
    xs = md.tensor(x[mine], requires_grad=True)
    y = bn(xs)
    (y * md.tensor(w[mine])).sum().backward()
    ys, gxs = comm.gather(y.data, root=0), comm.gather(xs.grad, root=0)
    gw = comm.allreduce(bn.weight.grad)
    gb = comm.allreduce(bn.bias.grad)
    if r == 0:
        ref = layer()
        xr = md.tensor(x, requires_grad=True)
        yr = ref(xr)
        (yr * md.tensor(w)).sum().backward()
        result(y=rel_err(np.concatenate(ys), yr.data), gx=rel_err(np.concatenate(gxs), xr.grad),
               gweight=rel_err(gw, ref.weight.grad), gbias=rel_err(gb, ref.bias.grad),
               running_mean=rel_err(bn.running_mean, ref.running_mean),
               running_var=rel_err(bn.running_var, ref.running_var),
               per_rank_differs=rel_err(layer()(md.tensor(x[mine])).data, y.data) > 1e-3)


def case_sync_bn_edges(c=2):
    """One value per channel on each rank (fine: 2 over the job), one over the whole job (an
    error on every rank), and a layer on a 1-rank sub-communicator (plain BatchNorm, no sync)."""
    from minidl.distributed import sync_batchnorm
    comm = dist.init()
    r = comm.Get_rank()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c, 1, 1))
    bn = dist.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(c)))[0]
    y = bn(md.tensor(x[r:r + 1])).data
    ys = comm.gather(y, root=0)
    single = None
    try:
        bn(md.tensor(x[:1] if r == 0 else x[:0]))
    except ValueError as e:
        single = str(e)
    singles = comm.gather(single, root=0)
    calls = []
    real = sync_batchnorm.SyncBatchNorm
    sync_batchnorm.SyncBatchNorm = lambda *a: calls.append(1) or real(*a)
    alone = comm.Split(color=r, key=0)
    own = dist.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(c)), alone)[0]
    xo = rng.standard_normal((3, c, 2, 2))
    yo = own(md.tensor(xo)).data
    sync_batchnorm.SyncBatchNorm = real
    plain = rel_err(yo, nn.BatchNorm2d(c)(md.tensor(xo)).data)
    if r == 0:
        result(pair=rel_err(np.concatenate(ys), nn.BatchNorm2d(c)(md.tensor(x)).data), singles=singles,
               own_comm_synced=bool(calls), own_comm_plain=plain)


def case_collectives():
    """all_gather / all_reduce / send / recv gradients == the single-process computation."""
    from minidl.distributed import comm as C
    comm = dist.init()
    r = comm.Get_rank()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    w1 = rng.standard_normal((2, 5, 4))     # rank k: h_k = x @ w1[k].T   (5 features each)
    w2 = rng.standard_normal((2, 3, 10))    # rank k: z_k = concat(h) @ w2[k].T  (3 outputs each)
    w3 = rng.standard_normal((2, 2, 3))     # rank k: partial_k = z_k @ w3[k].T; out = sum_k partial_k
    W1, W2, W3 = (md.tensor(a[r], requires_grad=True) for a in (w1, w2, w3))
    h = md.tensor(x) @ W1.T
    z = C.all_gather(h, axis=1) @ W2.T
    out = C.all_reduce(z @ W3.T)
    loss = (out ** 2).sum()
    loss.backward()
    grads = comm.gather([W1.grad, W2.grad, W3.grad], root=0)
    # pipeline: rank 0 computes a = tanh(x @ v0), sends it; rank 1 computes the loss from it
    v = rng.standard_normal((2, 4, 4))
    V = md.tensor(v[r], requires_grad=True)
    if r == 0:
        token = C.send(F.tanh(md.tensor(x) @ V), dest=1)
        token.backward()
    else:
        a = C.recv((3, 4), src=0, dtype=np.float64)
        (((a @ V) ** 2).sum()).backward()
    vgrads = comm.gather(V.grad, root=0)
    if r == 0:
        R = [md.tensor(a, requires_grad=True) for a in (w1, w2, w3)]
        hs = [md.tensor(x) @ R[0][k].T for k in range(2)]
        hcat = F.concat(hs, axis=1)
        outs = [(hcat @ R[1][k].T) @ R[2][k].T for k in range(2)]
        ref_loss = ((outs[0] + outs[1]) ** 2).sum()
        ref_loss.backward()
        errs = [rel_err(np.stack([g[i] for g in grads]), R[i].grad) for i in range(3)]
        VR = md.tensor(v, requires_grad=True)
        ((F.tanh(md.tensor(x) @ VR[0]) @ VR[1]) ** 2).sum().backward()
        result(loss=rel_err(loss.data, ref_loss.data), grads=errs,
               pipeline=rel_err(np.stack(vgrads), VR.grad))


def case_fault(fail_rank=1, fail_step=3, how="raise"):
    """Train an MLP; rank ``fail_rank`` raises (or freezes) at step ``fail_step``."""
    import signal
    comm = dist.init()
    r = comm.Get_rank()
    net = mlp(0)
    dp = dist.DataParallel(net)
    opt = optim.SGD(net.parameters(), lr=0.1)
    for step in range(1000):
        if r == fail_rank and step == fail_step:
            if how == "raise":
                raise RuntimeError(f"deliberate failure at step {step}")
            os.kill(os.getpid(), signal.SIGSTOP)  # a rank that vanishes without exiting
        x, t = data(step, 4)
        opt.zero_grad()
        F.cross_entropy(dp(md.tensor(x)), t).backward()
        dp.step(opt)
    result(finished=True)


def case_towers(lrn_halo=True, batch=2):
    """Two-tower AlexNet (tiny widths, float64) on 2 ranks == the grouped single-process model."""
    from minidl import models
    from minidl.distributed.towers import tower_alexnet, two_tower_alexnet
    comm = dist.init()
    md.manual_seed(0)
    entry = dict(two_tower_alexnet(num_classes=10, dropout=0.0, width=1 / 16).named_parameters())
    md.manual_seed(0)
    grouped = models.alexnet(num_classes=10, width=1 / 16, dropout=0.0)
    for p in grouped.parameters():
        p.data = p.data.astype(np.float64)
    tower = tower_alexnet(grouped, lrn_halo=lrn_halo)
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((batch, 3, 227, 227)), rng.integers(0, 10, batch)
    loss = F.cross_entropy(tower(md.tensor(x)), t)
    loss.backward()
    grads, weights = tower.gather_full("grad"), tower.gather_full("data")
    n_tower = tower.num_parameters()
    same_as_entry = all(np.array_equal(p.data, entry[k].data) for k, p in tower.named_parameters())
    if comm.Get_rank() == 0:
        ref = F.cross_entropy(grouped(md.tensor(x)), t)
        ref.backward()
        full = dict(grouped.named_parameters())
        result(loss=rel_err(loss.data, ref.data), loss_value=float(loss.data),
               grads={k: rel_err(g, full[k].grad) for k, g in grads.items()},
               weights=max(rel_err(w, full[k].data) for k, w in weights.items()),
               keys_match=list(grads) == list(full), tower_params=n_tower, grouped_params=grouped.num_parameters(),
               same_as_entry=same_as_entry)


if __name__ == "__main__":
    name, args = sys.argv[1], [json.loads(a) for a in sys.argv[2:]]
    globals()["case_" + name](*args)
