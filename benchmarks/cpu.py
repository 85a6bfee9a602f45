"""CPU speed: minidl against PyTorch (CPU) and DeZero 0.0.13, one run, the libraries alternating.

    python3 benchmarks/cpu.py [--repeat 7] [--only conv|train] [--threads N]
    python3 benchmarks/cpu.py --rows winograd [--repeat 7]    # 3x3 + wide 5x5 rows + VGG-style step, < 4 min
    python3 benchmarks/cpu.py --rows sweep                    # Winograd vs im2col: the auto rule, < 2 min
    python3 benchmarks/cpu.py --rows sweep5                   # the same for 5x5 kernels, < 3 min

Rows: conv2d forward+backward (all three gradients) at four ImageNet-era shapes, and one SGD step
(batch 128) of the cuda-convnet CIFAR-10 net: conv5x5-64 p2, ReLU, max-pool 3/2 ceil, LRN(9),
conv5x5-64 p2, ReLU, LRN(9), max-pool 3/2 ceil, linear 4096->10, cross-entropy, SGD momentum 0.9.
DeZero has neither LRN nor ceil-mode pooling: it runs the net without the LRNs and with pad-1
pools (same output sizes), in a row of its own against minidl on that same variant. Then the
VGG-style step below, the same net in all three. Prints the median
milliseconds of each library and the ratios to PyTorch (and DeZero / minidl).

``--rows winograd``: the 3x3 conv rows, the wide 5x5 row and a VGG-style SGD step (conv3x3-64, ReLU, conv3x3-64, ReLU,
max-pool 2, conv3x3-128, ReLU, conv3x3-128, ReLU, max-pool 2, linear 8192->10; 32x32 images, batch
128), minidl with Winograd (algorithm="winograd"; in the step for every conv but the first), minidl
with im2col and PyTorch, interleaved;
the ratio of each repetition is taken and the median of those ratios reported (steadier on a
loaded machine than a ratio of medians). In the default rows minidl runs with algorithm="auto".

Each repetition runs every library once, in turn, with a 0.2 s pause between calls: OpenBLAS and
PyTorch threads spin for a while after a call, and a library started meanwhile runs slower.
Numbers move with machine load; report the load (printed at the start) with them. On a busy
machine ``--threads 1`` (BLAS, Numba and PyTorch all single-threaded) compares the work each
library does without the thread-synchronisation stalls that load adds.
"""
import argparse
import functools
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# minidl first, as the `minidl` command does: its thread settings (idle OpenBLAS/OpenMP workers sleep
# at once, see minidl/__init__.py) are then read when NumPy's OpenBLAS loads, with no pool to restart.
# They apply to the whole process, so DeZero (NumPy too) gets them as well; PyTorch uses its own
# OpenMP and oneDNN.
import minidl as md  # noqa: E402
import numpy as np  # noqa: E402
from minidl import functional as F, nn, optim  # noqa: E402

CONV_ROWS = [  # (N, C, H, K, kernel, padding), stride 1
    (32, 96, 27, 256, 5, 2),
    (32, 256, 13, 384, 3, 1),
    (8, 128, 56, 128, 3, 1),
    (128, 3, 32, 64, 5, 2),
]
PAUSE = 0.2
# the 3x3 rows, the wide 5x5 one (AlexNet's conv2 without groups: Winograd as four 3x3 sub-kernels) and two VGG layers
WINOGRAD_ROWS = ([row for row in CONV_ROWS if row[4] == 3 or row[1] >= 64]
                 + [(128, 64, 32, 64, 3, 1), (128, 64, 32, 128, 3, 1)])


# ---- the three libraries, each returning a zero-argument callable that does one unit of work ------
def minidl_conv(x, w, b, pad, algorithm="auto", groups=1):
    X, W, B = (md.tensor(a, requires_grad=True) for a in (x, w, b))
    gy = None

    def run():
        nonlocal gy
        for t in (X, W, B):
            t.grad = None
        y = F.conv2d(X, W, B, 1, pad, groups, algorithm=algorithm)
        gy = np.ones(y.shape, dtype=np.float32) if gy is None else gy
        y.backward(gy)
    return run


def torch_conv(x, w, b, pad):
    import torch
    X, W, B = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    gy = None

    def run():
        nonlocal gy
        for t in (X, W, B):
            t.grad = None
        y = torch.nn.functional.conv2d(X, W, B, 1, pad)
        gy = torch.ones_like(y) if gy is None else gy
        y.backward(gy)
    return run


def dezero_conv(x, w, b, pad):
    import dezero
    X, W, B = (dezero.Variable(a.copy()) for a in (x, w, b))

    def run():
        for t in (X, W, B):
            t.cleargrad()
        y = dezero.functions.conv2d(X, W, B, 1, pad)
        y.backward()  # DeZero seeds a non-scalar output with ones, as the others do above
    return run


def minidl_train(x, t, params, dezero_net=False):
    """dezero_net: the net as DeZero runs it (no LRN, pad-1 pools; Identity keeps the state-dict keys)."""
    if dezero_net:
        pool, lrn = (lambda: nn.MaxPool2d(3, 2, padding=1)), nn.Identity
    else:
        pool, lrn = (lambda: nn.MaxPool2d(3, 2, ceil_mode=True)), (lambda: nn.LocalResponseNorm(9))
    model = nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), pool(), lrn(),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), lrn(), pool(),
        nn.Flatten(), nn.Linear(4096, 10))
    model.load_state_dict(params)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    X, T = md.tensor(x), t

    def run():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), T)
        loss.backward()
        opt.step()
    return run


def torch_train(x, t, params):
    import torch
    from torch import nn as tnn
    # minidl's LRN(size, alpha) is the AlexNet paper's; PyTorch divides alpha by size (reference/layers.md)
    model = tnn.Sequential(
        tnn.Conv2d(3, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True),
        tnn.LocalResponseNorm(9, alpha=9e-4, beta=0.75, k=2.0),
        tnn.Conv2d(64, 64, 5, padding=2), tnn.ReLU(), tnn.LocalResponseNorm(9, alpha=9e-4, beta=0.75, k=2.0),
        tnn.MaxPool2d(3, 2, ceil_mode=True), tnn.Flatten(), tnn.Linear(4096, 10))
    model.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    X, T = torch.tensor(x), torch.tensor(t)

    def run():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), T)
        loss.backward()
        opt.step()
    return run


def _dezero_step(model, x, t):
    """One DeZero SGD step (momentum 0.9, cross-entropy) on the batch (x, t), as a callable."""
    import dezero
    import dezero.functions as DF
    opt = dezero.optimizers.MomentumSGD(lr=0.01, momentum=0.9).setup(model)
    X = dezero.Variable(x)

    def run():
        model.cleargrads()
        loss = DF.softmax_cross_entropy(model(X), t)
        loss.backward()
        opt.update()
    return run


def dezero_train(x, t, params):
    import dezero
    import dezero.functions as DF
    import dezero.layers as DL

    class Net(dezero.Model):
        def __init__(self):
            super().__init__()
            self.c1 = DL.Conv2d(64, 5, pad=2, in_channels=3)
            self.c2 = DL.Conv2d(64, 5, pad=2, in_channels=64)
            self.fc = DL.Linear(10, in_size=4096)

        def forward(self, x):
            x = DF.pooling(DF.relu(self.c1(x)), 3, 2, 1)  # no LRN, and pad 1 stands in for ceil mode
            x = DF.pooling(DF.relu(self.c2(x)), 3, 2, 1)
            return self.fc(DF.reshape(x, (x.shape[0], -1)))

    model = Net()
    model.c1.W.data, model.c1.b.data = params["0.weight"].copy(), params["0.bias"].copy()
    model.c2.W.data, model.c2.b.data = params["4.weight"].copy(), params["4.bias"].copy()
    model.fc.W.data, model.fc.b.data = params["9.weight"].T.copy(), params["9.bias"].copy()  # DeZero's W is (in, out)
    return _dezero_step(model, x, t)


def vgg_params(rng):
    """Initial weights of the VGG-style net (minidl/PyTorch state-dict keys)."""
    shapes = {"0.weight": (64, 3, 3, 3), "2.weight": (64, 64, 3, 3), "5.weight": (128, 64, 3, 3),
              "7.weight": (128, 128, 3, 3), "11.weight": (10, 8192)}
    params = {}
    for k, s in shapes.items():
        params[k] = (rng.standard_normal(s) * (2.0 / math.prod(s[1:])) ** 0.5).astype(np.float32)
        params[k.replace("weight", "bias")] = np.zeros(s[0], np.float32)
    return params


def minidl_vgg(x, t, params, algorithm="auto"):
    """algorithm: for the 64- and 128-channel convs; the first (3 input channels) keeps "auto" (im2col)."""
    c = functools.partial(nn.Conv2d, kernel_size=3, padding=1, algorithm=algorithm)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), c(64, 64), nn.ReLU(), nn.MaxPool2d(2, 2),
                          c(64, 128), nn.ReLU(), c(128, 128), nn.ReLU(), nn.MaxPool2d(2, 2),
                          nn.Flatten(), nn.Linear(8192, 10))
    model.load_state_dict(params)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    X = md.tensor(x)

    def run():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), t)
        loss.backward()
        opt.step()
    return run


def torch_vgg(x, t, params):
    import torch
    from torch import nn as tnn
    c = functools.partial(tnn.Conv2d, kernel_size=3, padding=1)
    model = tnn.Sequential(c(3, 64), tnn.ReLU(), c(64, 64), tnn.ReLU(), tnn.MaxPool2d(2, 2),
                           c(64, 128), tnn.ReLU(), c(128, 128), tnn.ReLU(), tnn.MaxPool2d(2, 2),
                           tnn.Flatten(), tnn.Linear(8192, 10))
    model.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    X, T = torch.tensor(x), torch.tensor(t)

    def run():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), T)
        loss.backward()
        opt.step()
    return run


def dezero_vgg(x, t, params):
    import dezero
    import dezero.functions as DF
    import dezero.layers as DL

    class Net(dezero.Model):
        def __init__(self):
            super().__init__()
            for name, (c, k) in {"c0": (3, 64), "c2": (64, 64), "c5": (64, 128), "c7": (128, 128)}.items():
                setattr(self, name, DL.Conv2d(k, 3, pad=1, in_channels=c))
            self.fc = DL.Linear(10, in_size=8192)

        def forward(self, x):
            x = DF.pooling(DF.relu(self.c2(DF.relu(self.c0(x)))), 2, 2)
            x = DF.pooling(DF.relu(self.c7(DF.relu(self.c5(x)))), 2, 2)
            return self.fc(DF.reshape(x, (x.shape[0], -1)))

    model = Net()
    for i in (0, 2, 5, 7):
        layer = getattr(model, f"c{i}")
        layer.W.data, layer.b.data = params[f"{i}.weight"].copy(), params[f"{i}.bias"].copy()
    model.fc.W.data, model.fc.b.data = params["11.weight"].T.copy(), params["11.bias"].copy()
    return _dezero_step(model, x, t)


# ---- timing --------------------------------------------------------------------------------------
def available_libraries():
    libs = {"minidl": (minidl_conv, minidl_train)}
    try:
        import torch
        libs["pytorch"] = (torch_conv, torch_train)
    except ImportError:
        print("PyTorch not installed: its rows are skipped")
    try:
        np.int = int  # DeZero 0.0.13 still uses np.int, removed in NumPy 1.24
        import dezero  # noqa: F401
        libs["dezero"] = (dezero_conv, dezero_train)
    except ImportError:
        print("DeZero not installed (pip install dezero==0.0.13 matplotlib): its rows are skipped")
    return libs


def time_alternating(runs, repeat, warmup=1):
    """Median seconds of each callable, calling them in turn with a pause between calls."""
    times = {name: [] for name in runs}
    for rep in range(warmup + repeat):
        for name, run in runs.items():
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            run()
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def ratios_alternating(runs, repeat, base, warmup=1):
    """Median milliseconds of each callable and, for each, the median over repetitions of its time / base's."""
    times = {name: [] for name in runs}
    for rep in range(warmup + repeat):
        for name, run in runs.items():
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            run()
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(ts, times[base])) for name, ts in times.items()}
    return ms, ratio


def report_ratios(label, ms, ratio, base):
    cells = "  ".join(f"{name} {v:8.1f} ms" for name, v in ms.items())
    rs = "  ".join(f"{name}/{base} {r:.2f}x" for name, r in ratio.items() if name != base)
    print(f"{label:<36} {cells}  {rs}", flush=True)


def winograd_rows(repeat, has_torch):
    """The 3x3 conv rows, the wide 5x5 row and the VGG-style step: Winograd, im2col and PyTorch interleaved."""
    rng = np.random.default_rng(0)
    base = "pytorch" if has_torch else "im2col"
    for n, c, h, k, ks, pad in WINOGRAD_ROWS:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((k, c, ks, ks)) * 0.05).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        runs = {"winograd": minidl_conv(x, w, b, pad, "winograd"), "im2col": minidl_conv(x, w, b, pad, "im2col")}
        if has_torch:
            runs["pytorch"] = torch_conv(x, w, b, pad)
        report_ratios(f"conv N{n} C{c} {h}x{h} K{k} {ks}x{ks} p{pad}", *ratios_alternating(runs, repeat, base), base)
    x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    t = rng.integers(0, 10, size=128)
    params = vgg_params(rng)
    runs = {"winograd": minidl_vgg(x, t, params, "winograd"), "im2col": minidl_vgg(x, t, params, "im2col")}
    if has_torch:
        runs["pytorch"] = torch_vgg(x, t, params)
    report_ratios("VGG-style SGD step, batch 128", *ratios_alternating(runs, repeat, base), base)


def sweep_rows(repeat):
    """Winograd / im2col time of one conv forward+backward over channels and image sizes (the auto rule).

    The batch keeps about 4M input values per layer (N*C*H*W), so that each cell is a layer of a
    real training step rather than a call dominated by per-call overheads (lesson 03 shows one)."""
    rng = np.random.default_rng(0)
    print("channels C=K, image HxW (batch N for ~4M input values), padding 1: winograd/im2col (median of ratios)")
    for c in (64, 128, 256):
        cells = []
        for h in (8, 16, 32, 56):
            n = max(1, 4_000_000 // (c * h * h))
            x = rng.standard_normal((n, c, h, h)).astype(np.float32)
            w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
            b = np.zeros(c, np.float32)
            runs = {"winograd": minidl_conv(x, w, b, 1, "winograd"), "im2col": minidl_conv(x, w, b, 1, "im2col")}
            _, ratio = ratios_alternating(runs, repeat, "im2col")
            cells.append(f"{h}x{h} N{n} {ratio['winograd']:.2f}")
        print(f"C=K={c:<3} " + "  ".join(cells), flush=True)


# (N, C, H, K, groups) with padding 2: the 5x5 shapes behind auto's 5x5 rule (the last: the CIFAR-10 net's conv2)
SWEEP_5X5 = [(32, 96, 27, 256, 1), (32, 128, 27, 256, 1), (16, 192, 27, 256, 1), (8, 128, 56, 128, 1),
             (32, 96, 27, 128, 1), (16, 256, 13, 256, 1), (32, 96, 27, 256, 2), (128, 32, 32, 32, 1),
             (128, 32, 16, 64, 1), (128, 32, 8, 64, 1), (128, 64, 16, 64, 1)]


def sweep_5x5_rows(repeat):
    """Winograd (four 3x3 sub-kernels) / im2col time of one 5x5 conv forward+backward (auto's 5x5 rule)."""
    rng = np.random.default_rng(0)
    print("5x5 conv, padding 2, fwd + bwd: winograd/im2col (median of ratios)")
    for n, c, h, k, groups in SWEEP_5X5:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((k, c // groups, 5, 5)) * 0.05).astype(np.float32)
        b = np.zeros(k, np.float32)
        runs = {"winograd": minidl_conv(x, w, b, 2, "winograd", groups),
                "im2col": minidl_conv(x, w, b, 2, "im2col", groups)}
        ms, ratio = ratios_alternating(runs, repeat, "im2col")
        print(f"N{n} C{c} {h}x{h} K{k} groups {groups}: winograd {ms['winograd']:.1f} ms, im2col {ms['im2col']:.1f} ms, "
              f"ratio {ratio['winograd']:.2f}", flush=True)


def report(label, medians):
    ms = {k: v * 1e3 for k, v in medians.items()}
    cells = "  ".join(f"{name} {v:8.1f} ms" for name, v in ms.items())
    ratios = ""
    if "pytorch" in ms:
        ratios += f"  minidl/pytorch {ms['minidl'] / ms['pytorch']:.2f}x"
    if "dezero" in ms:
        ratios += f"  dezero/minidl {ms['dezero'] / ms['minidl']:.2f}x"
    print(f"{label:<36} {cells}{ratios}", flush=True)


def cifar_params(rng):
    """Initial weights shared by the three nets (minidl/PyTorch state-dict keys)."""
    shapes = {"0.weight": (64, 3, 5, 5), "0.bias": (64,), "4.weight": (64, 64, 5, 5), "4.bias": (64,),
              "9.weight": (10, 4096), "9.bias": (10,)}
    return {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in shapes.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=["conv", "train"])
    parser.add_argument("--rows", choices=["all", "winograd", "sweep", "sweep5"], default="all",
                        help="winograd: 3x3 and wide 5x5 rows + VGG-style step with Winograd/im2col/PyTorch; sweep, sweep5: the auto rule (3x3, 5x5)")
    parser.add_argument("--threads", type=int, help="threads for BLAS, Numba and PyTorch (default: all cores)")
    args = parser.parse_args()
    libs = available_libraries()
    if args.threads:
        import numba
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
        numba.set_num_threads(args.threads)
        if "pytorch" in libs:
            import torch
            torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i['version']} {i.get('architecture', '')} threads={i['num_threads']}"
                for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        blas = ["?"]
    print(f"numpy {np.__version__}, BLAS: {'; '.join(blas)}; cores {os.cpu_count()}; "
          f"threads {args.threads or 'all'}; load average at start {os.getloadavg()[0]:.2f}; median of {args.repeat}")
    if args.rows == "winograd":
        winograd_rows(args.repeat, "pytorch" in libs)
    elif args.rows == "sweep":
        sweep_rows(args.repeat)
    elif args.rows == "sweep5":
        sweep_5x5_rows(args.repeat)
    if args.rows != "all":
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        return
    rng = np.random.default_rng(0)
    if args.only in (None, "conv"):
        for n, c, h, k, ks, pad in CONV_ROWS:
            x = rng.standard_normal((n, c, h, h)).astype(np.float32)
            w = (rng.standard_normal((k, c, ks, ks)) * 0.05).astype(np.float32)
            b = rng.standard_normal(k).astype(np.float32)
            runs = {name: conv(x, w, b, pad) for name, (conv, _) in libs.items()}
            report(f"conv N{n} C{c} {h}x{h} K{k} {ks}x{ks} p{pad}", time_alternating(runs, args.repeat))
    if args.only in (None, "train"):
        x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
        t = rng.integers(0, 10, size=128)
        params = cifar_params(rng)
        runs = {name: train(x, t, params) for name, (_, train) in libs.items() if name != "dezero"}
        report("CIFAR-10 net SGD step, batch 128", time_alternating(runs, args.repeat))
        if "dezero" in libs:  # DeZero's own variant of the net on both sides: the same work
            runs = {"minidl": minidl_train(x, t, params, dezero_net=True), "dezero": dezero_train(x, t, params)}
            report("CIFAR-10 net as DeZero runs it", time_alternating(runs, args.repeat))
        params = vgg_params(rng)
        runs = {"minidl": minidl_vgg(x, t, params)}
        if "pytorch" in libs:
            runs["pytorch"] = torch_vgg(x, t, params)
        if "dezero" in libs:
            runs["dezero"] = dezero_vgg(x, t, params)
        report("VGG-style SGD step, batch 128", time_alternating(runs, args.repeat))
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
