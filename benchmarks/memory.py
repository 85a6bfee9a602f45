"""Peak memory of the first training step above the model's own footprint: minidl against PyTorch.

    python3 benchmarks/memory.py                                   # CPU: six models, batch 16, 128x128
    python3 benchmarks/memory.py --models vgg11 resnet18           # some of them
    python3 benchmarks/memory.py --device cuda                     # GPU: batch 64, 224x224
    python3 benchmarks/memory.py --device cuda --models vgg16 --json mem.json

Each (framework, model) runs in a fresh subprocess, the same way for both: build the model (train
mode), SGD with momentum 0.9 and weight decay 5e-4, a random batch and labels; a warm-up forward
and backward on 2 images (so that neither Numba loading its compiled kernels nor oneDNN building
its primitives counts), gradients dropped; then the footprint is read, and one full step (forward,
cross-entropy, backward, optimiser step: the gradients and momentum buffers are new here, in
both) is measured. CPU: the peak resident set (VmHWM, reset through /proc/self/clear_refs just
before the step; ru_maxrss where /proc is missing) minus the resident set before it. GPU: CuPy's
pool ``used_bytes`` peak (a memory hook) against ``torch.cuda.max_memory_allocated``, each minus
what was allocated before the step: live arrays in both, not cached blocks.

For minidl the child also says where its memory goes: the arrays the graph saves for backward at
the end of the forward, the parameters, and the conv scratch buffers kept between calls; and for
both, the peak so far after the forward, after the backward and after the optimiser step.
PyTorch's side needs torchvision (the model definitions; its compiled ops are not used).
"""
import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2 ** 20

# name -> (minidl registry name and kwargs, torchvision constructor name and kwargs)
MODELS = {
    "alexnet": (("alexnet_torchvision", {}), ("alexnet", {})),
    "vgg11": (("vgg11", {}), ("vgg11", {})),
    "vgg16": (("vgg16", {}), ("vgg16", {})),
    "googlenet": (("googlenet_torchvision", {"aux_logits": False}), ("googlenet", {"aux_logits": False, "init_weights": True})),
    "resnet18": (("resnet18", {}), ("resnet18", {})),
    "resnet50": (("resnet50", {}), ("resnet50", {})),
}
TARGET = {"cpu": 1.1, "cuda": 1.2}  # issue 15: minidl's peak above the footprint <= this times PyTorch's


# ---- reading the memory --------------------------------------------------------------------------
def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _trim_heap():
    """Hand the heap's free memory back to the OS (glibc's malloc_trim), so that the resident set read
    as the base is live memory only. Without it, whatever the allocator kept from building the model
    (minidl keeps freed blocks for reuse, minidl/__init__.py) would sit in the base and be reused by
    the step unseen, flattering that framework."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class HostPeak:
    """Resident-set peak of this process from ``start()`` on, in bytes (Linux: VmHWM after a reset)."""

    def start(self):
        gc.collect()
        _trim_heap()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            self.proc = True
            self.base = _status_kib("VmRSS") * 1024
        except OSError:
            import resource
            self.proc = False  # ru_maxrss cannot be reset: a higher peak before the step would hide the step's
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def stop(self):
        if self.proc:
            return _status_kib("VmHWM") * 1024
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cupy_peak():
    import cupy as cp

    class PoolPeak(cp.cuda.MemoryHook):
        name = "minidl_memory_peak"

        def __init__(self):
            self.pool = cp.get_default_memory_pool()
            self.base = self.peak = self.pool.used_bytes()

        def malloc_postprocess(self, **kwargs):
            self.peak = max(self.peak, self.pool.used_bytes())

        def stop(self):
            cp.cuda.Device().synchronize()
            return self.peak

    return PoolPeak()


@contextlib.contextmanager
def _nothing():
    yield


# ---- the two children ----------------------------------------------------------------------------
def _graph_saved_bytes(loss, exclude):
    """Bytes of the arrays the graph's Functions hold for backward (each memory block once)."""
    def owner(a):
        while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
            a = a.base
        return a
    skip = {id(owner(a)) for a in exclude}
    seen, stack, blocks = set(), [loss.creator], {}
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        for v in vars(f).values():
            for a in (v if isinstance(v, (tuple, list)) else (v,)):
                if hasattr(a, "nbytes") and hasattr(a, "base") and id(owner(a)) not in skip:
                    blocks[id(owner(a))] = owner(a).nbytes
        stack.extend(n.creator for n in f.inputs)
    return sum(blocks.values())


def _scratch_bytes():
    """The conv scratch arena minidl keeps between calls (this thread's; minidl/kernels/workspace.py)."""
    from minidl.kernels import workspace
    return workspace.nbytes()


def child_minidl(model, batch, size, device, chunk_mib=None):
    import numpy as np
    import minidl as md
    from minidl import functional as F, models, optim
    if chunk_mib:  # an experiment: another bound on the conv scratch arena (more, smaller chunks or fewer, larger)
        from minidl.kernels import workspace
        workspace.LIMIT_BYTES = workspace.GPU_LIMIT_BYTES = int(chunk_mib * MiB)
    key, kwargs = MODELS[model][0]
    md.manual_seed(0)
    net = models.get_model(key, **kwargs)
    if device == "cuda":
        net = net.to("cuda")
    net.train()
    params = list(net.parameters())
    opt = optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((batch, 3, size, size), dtype=np.float32), device=device)
    t = rng.integers(0, 1000, size=batch)
    F.cross_entropy(net(md.Tensor(x.data[:2])), t[:2]).backward()  # warm-up
    opt.zero_grad()
    for p in params:
        p.grad = None
    meter = _cupy_peak() if device == "cuda" else HostPeak().start()
    peaks = []  # the peak so far after the forward, the backward and the optimiser step
    with meter if device == "cuda" else _nothing():
        loss = F.cross_entropy(net(x), t)
        saved = _graph_saved_bytes(loss, [x.data] + [p.data for p in params])
        peaks.append(meter.stop())
        loss.backward()
        peaks.append(meter.stop())
        opt.step()
        peaks.append(meter.stop())
    return {"base": meter.base, "peak": peaks[-1], "phases": peaks, "params": sum(p.data.nbytes for p in params),
            "saved": saved, "scratch": _scratch_bytes(), "loss": float(loss.item())}


def _torchvision_models():
    try:
        import torchvision
        return torchvision.models
    except Exception:
        # A torchvision wheel whose compiled ops do not match the installed torch fails on import;
        # the model definitions are plain Python: load them without the package's __init__.
        spec = importlib.util.find_spec("torchvision")
        if spec is None:
            raise SystemExit("benchmarks/memory.py: PyTorch's side needs torchvision (pip install torchvision)")
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        pkg = types.ModuleType("torchvision")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchvision"] = pkg
        return importlib.import_module("torchvision.models")


def child_torch(model, batch, size, device):
    import torch
    name, kwargs = MODELS[model][1]
    tv = _torchvision_models()
    torch.manual_seed(0)
    net = getattr(tv, name)(weights=None, **kwargs).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    lossf = torch.nn.CrossEntropyLoss()
    lossf(net(x[:2]), t[:2]).backward()  # warm-up
    opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        meter = HostPeak().start()
        base = meter.base

    def peak():
        if device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return meter.stop()
    peaks = []  # the peak so far after the forward, the backward and the optimiser step
    loss = lossf(net(x), t)
    peaks.append(peak())
    loss.backward()
    peaks.append(peak())
    opt.step()
    peaks.append(peak())
    return {"base": base, "peak": peaks[-1], "phases": peaks,
            "params": sum(p.numel() * p.element_size() for p in net.parameters()), "loss": float(loss.item())}


# ---- the parent ----------------------------------------------------------------------------------
def _phases(r):
    return "/".join(f"{(p - r['base']) / MiB:,.0f}" for p in r["phases"])


def measure(framework, model, batch, size, device, chunk_mib=None):
    """Run one child in a fresh interpreter; its dictionary of numbers (bytes)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, model,
           "--batch", str(batch), "--size", str(size), "--device", device]
    if chunk_mib and framework == "minidl":
        cmd += ["--chunk-mib", str(chunk_mib)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"{framework} {model} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, help="default 16 on the CPU, 64 on the GPU")
    ap.add_argument("--size", type=int, help="image side; default 128 on the CPU, 224 on the GPU")
    ap.add_argument("--json", help="also write every number to this file")
    ap.add_argument("--chunk-mib", type=float, help="experiment: bound minidl's conv scratch arena to this "
                    "many MiB (workspace.LIMIT_BYTES; default: as shipped)")
    ap.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    batch = args.batch or (16 if args.device == "cpu" else 64)
    size = args.size or (128 if args.device == "cpu" else 224)
    if args.child:
        framework, model = args.child
        out = (child_minidl(model, batch, size, args.device, args.chunk_mib) if framework == "minidl"
               else child_torch(model, batch, size, args.device))
        print(json.dumps(out))
        return 0

    what = "peak RSS" if args.device == "cpu" else "allocator peak"
    print(f"first training step, {what} above the footprint, batch {batch}, {size}x{size}, {args.device}; "
          f"target minidl <= {TARGET[args.device]}x PyTorch")
    print(f"{'model':<10} {'PyTorch MiB':>11} {'minidl MiB':>10} {'ratio':>6}   "
          f"minidl: {'params':>7} {'saved':>7} {'scratch':>7}   peak after fwd/bwd/step, PyTorch | minidl (MiB)")
    rows = []
    for model in args.models:
        pt = measure("torch", model, batch, size, args.device)
        mine = measure("minidl", model, batch, size, args.device, args.chunk_mib)
        above_pt, above_md = pt["peak"] - pt["base"], mine["peak"] - mine["base"]
        ratio = above_md / above_pt
        mark = "ok" if ratio <= TARGET[args.device] else "MISSED"
        print(f"{model:<10} {above_pt / MiB:>11,.0f} {above_md / MiB:>10,.0f} {ratio:>5.2f}x   "
              f"        {mine['params'] / MiB:>7,.0f} {mine['saved'] / MiB:>7,.0f} {mine['scratch'] / MiB:>7,.0f}   "
              f"{_phases(pt)} | {_phases(mine)}  {mark}", flush=True)
        rows.append({"model": model, "batch": batch, "size": size, "device": args.device,
                     "torch": pt, "minidl": mine, "ratio": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
