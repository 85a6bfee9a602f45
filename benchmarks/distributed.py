"""Data-parallel training speed on MPI ranks: images/s on 1 and 2 ranks (one thread each), the time
per step spent in communication with and without overlapping it with backward, and minidl's
bucketed all-reduce bandwidth next to one plain MPI Allreduce of the same bytes.

    python3 benchmarks/distributed.py                 # starts the ranks itself (1, then 2)
    python3 benchmarks/distributed.py --steps 5 --markdown

The net is the CIFAR-10 net of cuda-convnet (Krizhevsky's layers-18pct, the lecture's CIFAR model):
conv5x5-64, ReLU, max-pool 3/2 (ceil), LRN(9), conv5x5-64, ReLU, LRN(9), max-pool 3/2 (ceil),
linear 4096->10; batch 128 per rank, float32, SGD with momentum.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def cifar_net():
    from minidl import nn
    lrn = dict(size=9, alpha=0.001 / 9, beta=0.75, k=1.0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


def worker(args):
    import minidl as md
    from minidl import optim, functional as F
    from minidl import distributed as dist
    comm = dist.init()
    r, world = comm.Get_rank(), comm.Get_size()
    md.manual_seed(0)
    net = cifar_net()
    rng = np.random.default_rng(r)
    x = md.tensor(rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32))
    t = rng.integers(0, 10, args.batch)
    out = {"world": world}
    dp = dist.DataParallel(net, bucket_mb=args.bucket_mb)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    modes = [True, False] if world > 1 else [False]
    for i in range(args.warmup):
        dp.overlap = modes[i % len(modes)]
        opt.zero_grad()
        F.cross_entropy(dp(x), t).backward()
        dp.step(opt)
    # the modes alternate step by step, so that a change in the machine's load hits both alike
    seconds, comm_s = {m: 0.0 for m in modes}, {m: 0.0 for m in modes}
    for i in range(args.steps * len(modes)):
        mode = modes[i % len(modes)]
        dp.overlap = mode
        comm.Barrier()
        c0, t0 = dp.comm_seconds, time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(dp(x), t).backward()
        dp.step(opt)
        comm.Barrier()
        seconds[mode] += time.perf_counter() - t0
        comm_s[mode] += dp.comm_seconds - c0
    for mode in modes:
        out["overlap" if mode else "after_backward"] = {
            "images_per_s": world * args.batch * args.steps / seconds[mode], "step_s": seconds[mode] / args.steps,
            "comm_s_per_step": comm.allreduce(comm_s[mode]) / world / args.steps, "buckets": dp.bucket_sizes()}
    dp.remove_hooks()
    if world > 1:
        out["bandwidth"] = bandwidth(net, comm, args)
    if r == 0:
        print("RESULT " + json.dumps(out), flush=True)


def bandwidth(net, comm, args, repeats=20):
    """All-reduce of the whole gradient: minidl's buckets (pack, Allreduce, unpack) vs one MPI
    Allreduce of a ready contiguous buffer of the same bytes. GB/s = gradient bytes / time."""
    from minidl import distributed as dist
    MPI = dist.mpi()
    params = net.parameters()
    for p in params:
        p.grad = np.ones_like(p.data)
    nbytes = sum(p.data.nbytes for p in params)
    times = {}
    for name in ("minidl", "mpi"):
        buf = np.ones(nbytes // 4, dtype=np.float32)
        best = []
        for _ in range(repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            if name == "minidl":
                dist.average_gradients(params, comm, bucket_mb=args.bucket_mb)
            else:
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            best.append(time.perf_counter() - t0)
        times[name] = float(np.median(best))
    return {"bytes": nbytes, **{f"{k}_s": v for k, v in times.items()},
            **{f"{k}_GBps": nbytes / v / 1e9 for k, v in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (Numba compiles)")
    parser.add_argument("--batch", type=int, default=128, help="images per rank per step")
    parser.add_argument("--bucket-mb", type=float, default=0.25,
                        help="bucket cap in MiB (the net's 0.6 MB of gradients make 3 buckets at 0.25)")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from minidl import distributed as dist
    reason = dist.unavailable_reason()
    if reason:
        sys.exit(f"benchmarks/distributed.py: {reason}")
    results = {}
    for n in [int(v) for v in args.ranks.split(",")]:
        cmd = ["python3", os.path.abspath(__file__), "--worker", "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--batch", str(args.batch), "--bucket-mb", str(args.bucket_mb)]
        proc = dist.run_ranks(n, cmd, timeout=3600, threads=1)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{n} ranks failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[n] = json.loads(lines[-1][7:])
        print(f"{n} rank(s) done", file=sys.stderr, flush=True)
    report(results, args)


def report(results, args):
    base = results.get(1, {}).get("after_backward", {}).get("images_per_s")
    rows = [("ranks", "mode", "images/s", "speed-up", "step (s)", "comm/step (ms)")]
    for n, res in results.items():
        for mode in ("after_backward", "overlap"):
            if mode not in res:
                continue
            m = res[mode]
            rows.append((str(n), "single process" if n == 1 else ("overlapped buckets" if mode == "overlap"
                                                                  else "all-reduce after backward"),
                         f"{m['images_per_s']:.1f}", f"{m['images_per_s'] / base:.2f}x" if base else "-",
                         f"{m['step_s']:.3f}", f"{1e3 * m['comm_s_per_step']:.2f}" if n > 1 else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = " | " if args.markdown else "  "
    for i, row in enumerate(rows):
        line = sep.join(c.ljust(w) for c, w in zip(row, widths))
        print(f"| {line} |" if args.markdown else line)
        if args.markdown and i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for n, res in results.items():
        if "bandwidth" in res:
            b = res["bandwidth"]
            buckets = res["overlap"]["buckets"]
            print(f"\nall-reduce of the gradient ({b['bytes'] / 1e6:.2f} MB, {n} ranks, buckets "
                  f"{[round(s / 1e3) for s in buckets]} kB): minidl {1e3 * b['minidl_s']:.2f} ms "
                  f"({b['minidl_GBps']:.2f} GB/s) vs one MPI Allreduce {1e3 * b['mpi_s']:.2f} ms "
                  f"({b['mpi_GBps']:.2f} GB/s)")


if __name__ == "__main__":
    main()
