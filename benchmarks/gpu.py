"""One SGD training step on the GPU: minidl (CuPy) against PyTorch + cuDNN, float32 and TF32.

    python3 benchmarks/gpu.py                              # the four models, fp32 then TF32
    python3 benchmarks/gpu.py --quick --models vgg16       # fewer steps, one model
    python3 benchmarks/gpu.py --json out.json              # also write every number as JSON
    python3 benchmarks/gpu.py --profile vgg16              # where minidl's step time goes, per op
    python3 benchmarks/gpu.py --winograd vgg16             # + minidl with Winograd 3x3 convs (default)

A step is forward, cross-entropy, backward and an SGD update (momentum 0.9, weight decay 5e-4) on
random 224x224 images, synchronised before the clock is read; the median of ``--steps`` steps after
``--warmup`` unmeasured ones. PyTorch runs with cudnn.benchmark on. "fp32" turns TF32 off in both
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False; minidl's
default); "tf32" turns it on in both (md.set_tf32(True)). Peak memory: PyTorch's
max_memory_allocated; for minidl the peak of CuPy's pool ``used_bytes`` (a memory hook, during one
extra step that is not timed), i.e. the same quantity: live arrays, not cached blocks.
GoogLeNet runs without its auxiliary classifiers in both (torchvision's aux_logits=False).
For the models in ``--winograd`` (default vgg16) minidl runs a second time with every 3x3 stride-1
convolution on Winograd F(4x4, 3x3) (nn.Conv2d algorithm="winograd"; "auto" keeps im2col on the
GPU until this comparison has been measured): the row "minidl_winograd" and its ratio.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

# name -> (minidl constructor, torchvision constructor name and kwargs, batch)
MODELS = {
    "alexnet": ("alexnet_torchvision", ("alexnet", {}), 128),
    "vgg16": ("vgg16", ("vgg16", {}), 64),
    "resnet50": ("resnet50", ("resnet50", {}), 64),
    "googlenet": ("googlenet_torchvision", ("googlenet", {"aux_logits": False, "init_weights": True}), 64),
}
PEERS_FP32 = {"alexnet": 10547, "vgg16": 606, "resnet50": 878, "googlenet": 1848}   # reference/peers.md, H100
TARGETS = {"fp32": {"alexnet": 0.5, "vgg16": 0.6, "resnet50": 0.45, "googlenet": 0.35}, "tf32": {"vgg16": 0.75}}


def _minidl_model(name):
    from minidl import models
    key = MODELS[name][0]
    kwargs = {"aux_logits": False} if name == "googlenet" else {}
    return models.get_model(key, **kwargs)


def _torch_model(name):
    import torchvision
    fn, kwargs = MODELS[name][1]
    return getattr(torchvision.models, fn)(weights=None, **kwargs)


def _peak_hook():
    """A cupy.cuda.MemoryHook recording the peak of the pool's used_bytes while it is active."""
    import cupy as cp

    class PeakHook(cp.cuda.MemoryHook):
        name = "minidl_peak"

        def __init__(self):
            self.pool = cp.get_default_memory_pool()
            self.peak = self.pool.used_bytes()

        def malloc_postprocess(self, **kwargs):
            self.peak = max(self.peak, self.pool.used_bytes())

    return PeakHook()


def bench_minidl(name, batch, tf32, warmup, steps, algorithm=None):
    import cupy as cp
    import minidl as md
    from minidl import functional as F, nn, optim
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    md.set_tf32(tf32)
    md.manual_seed(0)
    net = _minidl_model(name).to("cuda")
    if algorithm:  # e.g. "winograd": every 3x3 stride-1 conv of the net on it, the others as they are
        for mod in net.modules():
            if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3) and mod.stride == (1, 1):
                mod.algorithm = algorithm
    net.train()
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = cp.random.default_rng(0)
    x = md.tensor(rng.standard_normal((batch, 3, 224, 224), dtype=cp.float32))
    t = rng.integers(0, 1000, size=batch)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), t)
        loss.backward()
        opt.step()
        return loss

    times = []
    for i in range(warmup + steps):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        loss = step()
        cp.cuda.Device().synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    hook = _peak_hook()
    with hook:
        step()
        cp.cuda.Device().synchronize()
    loss_value = float(loss.item())
    del step, net, opt, x, loss
    gc.collect()
    pool.free_all_blocks()
    md.set_tf32(False)
    return statistics.median(times), hook.peak, loss_value


def bench_torch(name, batch, tf32, warmup, steps):
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    net = _torch_model(name).cuda().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    t = torch.randint(0, 1000, (batch,), device="cuda")
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(x), t)
        loss.backward()
        opt.step()
        return loss

    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated()
    loss_value = float(loss.item())
    del step, net, opt, x, loss
    gc.collect()
    torch.cuda.empty_cache()
    return statistics.median(times), peak, loss_value


def profile_minidl(name, batch, steps=3, warmup=2):
    """Seconds per Function type (forward and backward apart), optimiser and the rest, per step.

    Every op's forward and backward is bracketed by device synchronisations, so the numbers add the
    launch gaps that asynchrony normally hides: read them as shares, not as the step time."""
    import cupy as cp
    import minidl as md
    from minidl import functional as F, optim
    from minidl.autograd import Function
    md.manual_seed(0)
    net = _minidl_model(name).to("cuda")
    net.train()
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = cp.random.default_rng(0)
    x = md.tensor(rng.standard_normal((batch, 3, 224, 224), dtype=cp.float32))
    t = rng.integers(0, 1000, size=batch)
    totals, calls = {}, {}
    sync = cp.cuda.Device().synchronize

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0
            calls[key] = calls.get(key, 0) + 1
            return out
        return wrapper

    def subclasses(cls):
        for c in cls.__subclasses__():
            yield c
            yield from subclasses(c)

    patched = []
    for cls in set(subclasses(Function)):
        for method in ("forward", "backward"):
            if method in cls.__dict__:
                original = cls.__dict__[method]
                patched.append((cls, method, original))
                setattr(cls, method, timed(f"{cls.__name__}.{method}", original))
    step_opt = opt.step
    opt.step = timed("SGD.step", step_opt)
    try:
        wall = []
        for i in range(warmup + steps):
            if i == warmup:
                totals.clear()
                calls.clear()
            sync()
            t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(net(x), t).backward()
            opt.step()
            sync()
            if i >= warmup:
                wall.append(time.perf_counter() - t0)
    finally:
        for cls, method, original in patched:
            setattr(cls, method, original)
        opt.step = step_opt
    step_time = sum(wall) / len(wall)
    rows = sorted(((k, v / steps, calls[k] // steps) for k, v in totals.items()), key=lambda r: -r[1])
    accounted = sum(r[1] for r in rows)
    lines = [f"## minidl per-op profile: {name}, batch {batch}, fp32, mean of {steps} synchronised steps",
             "", f"step (with per-op synchronisation): {step_time * 1e3:.1f} ms", "",
             "| op | ms / step | calls / step | share |", "|---|---:|---:|---:|"]
    for k, sec, n in rows:
        lines.append(f"| {k} | {sec * 1e3:.2f} | {n} | {sec / step_time:.1%} |")
    lines.append(f"| (Python, graph, loss glue: the rest) | {(step_time - accounted) * 1e3:.2f} | | "
                 f"{(step_time - accounted) / step_time:.1%} |")
    return "\n".join(lines), {"model": name, "batch": batch, "step_s": step_time,
                              "ops": {k: {"s_per_step": sec, "calls": n} for k, sec, n in rows}}


def _fmt_mem(b):
    return f"{b / 2 ** 30:.2f} GiB"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--quick", action="store_true", help="2 warm-up and 10 timed steps (default 3 and 12)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--modes", default="fp32,tf32", help="fp32, tf32 or both")
    ap.add_argument("--json", default=None, help="write the results here (rewritten after every row)")
    ap.add_argument("--profile", default=None, metavar="MODEL", help="per-op profile of one minidl model instead")
    ap.add_argument("--winograd", default="vgg16", help="models also run with Winograd 3x3 convs (comma-separated; '' for none)")
    args = ap.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    steps = args.steps if args.steps is not None else (10 if args.quick else 12)

    from minidl import backend
    backend.require_gpu()
    import cupy as cp
    props = cp.cuda.runtime.getDeviceProperties(0)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    if args.profile:
        text, data = profile_minidl(args.profile, MODELS[args.profile][2])
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": device, "profile": data}, f, indent=1)
        return

    import torch
    import torchvision
    meta = {"device": device, "cupy": cp.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cudnn": torch.backends.cudnn.version(),
            "numpy": np.__version__, "warmup": warmup, "steps": steps,
            "command": "python3 benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"# {device} · CuPy {cp.__version__} · PyTorch {torch.__version__} (cuDNN {meta['cudnn']}) · "
          f"median of {steps} steps after {warmup} warm-up", flush=True)
    rows = []
    names = [m for m in args.models.split(",") if m]
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for mode in [m for m in args.modes.split(",") if m]:
        tf32 = mode == "tf32"
        for name in names:
            batch = MODELS[name][2]
            row = {"model": name, "batch": batch, "mode": mode}
            libs = [("torch", bench_torch), ("minidl", bench_minidl)]
            if name in args.winograd.split(","):
                libs.append(("minidl_winograd", lambda *a: bench_minidl(*a, algorithm="winograd")))
            for lib, fn in libs:
                try:
                    sec, peak, loss = fn(name, batch, tf32, warmup, steps)
                    row[lib] = {"step_s": sec, "img_s": batch / sec, "peak_bytes": peak, "loss": loss}
                except Exception as e:  # keep going: one failure should not hide the other rows
                    row[lib] = {"error": f"{type(e).__name__}: {e}"[:500]}
                    import cupy
                    cupy.get_default_memory_pool().free_all_blocks()
            if "img_s" in row["torch"] and "img_s" in row["minidl"]:
                row["ratio"] = row["minidl"]["img_s"] / row["torch"]["img_s"]
                row["mem_ratio"] = row["minidl"]["peak_bytes"] / row["torch"]["peak_bytes"]
                row["target"] = TARGETS.get(mode, {}).get(name)
            if "img_s" in row["torch"] and "img_s" in row.get("minidl_winograd", {}):
                row["winograd_ratio"] = row["minidl_winograd"]["img_s"] / row["torch"]["img_s"]
                row["winograd_mem_ratio"] = row["minidl_winograd"]["peak_bytes"] / row["torch"]["peak_bytes"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print()
    print("| model | batch | mode | PyTorch img/s | minidl img/s | ratio | target | PyTorch peak | minidl peak | mem ratio |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t, m = r["torch"], r["minidl"]
        ti = f"{t['img_s']:,.0f}" if "img_s" in t else "error"
        mi = f"{m['img_s']:,.1f}" if "img_s" in m else "error"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "—"
        target = f"≥ {r['target']}x" if r.get("target") else "—"
        tp = _fmt_mem(t["peak_bytes"]) if "peak_bytes" in t else "—"
        mp = _fmt_mem(m["peak_bytes"]) if "peak_bytes" in m else "—"
        mr = f"{r['mem_ratio']:.2f}x" if "mem_ratio" in r else "—"
        print(f"| {r['model']} | {r['batch']} | {r['mode']} | {ti} | {mi} | {ratio} | {target} | {tp} | {mp} | {mr} |")
        w = r.get("minidl_winograd")
        if w is not None:
            wi = f"{w['img_s']:,.1f}" if "img_s" in w else "error"
            wr = f"{r['winograd_ratio']:.2f}x" if "winograd_ratio" in r else "—"
            wp = _fmt_mem(w["peak_bytes"]) if "peak_bytes" in w else "—"
            wm = f"{r['winograd_mem_ratio']:.2f}x" if "winograd_mem_ratio" in r else "—"
            print(f"| {r['model']} winograd | {r['batch']} | {r['mode']} | {ti} | {wi} | {wr} | — | {tp} | {wp} | {wm} |")
    for r in rows:
        for lib in ("torch", "minidl", "minidl_winograd"):
            if lib not in r:
                continue
            if "error" in r[lib]:
                print(f"{r['model']} {r['mode']} {lib}: {r[lib]['error']}")


if __name__ == "__main__":
    main()
