"""The ``minidl`` command: its subcommands, their flags, and the glue from a command line to a run.

Each subcommand is a pair ``add_<name>_parser(sub)`` / ``cmd_<name>(args)``, registered in the table
``SUBCOMMANDS``. Flags take argparse type functions (``positive_int`` …), so a meaningless value is
refused naming the flag before anything starts. The work is done by ``run_training``,
``run_evaluation`` and ``run_classify`` in minidl.runs (imported here, so ``minidl.cli.run_training``
keeps working).
"""
import argparse
import math
import os
import sys
import tempfile

import minidl
from minidl.checkpoint import CheckpointError
from minidl.runs import (_num_classes, imagenet_class_names, interrupted_message, run_classify,  # noqa: F401
                         run_evaluation, run_training)
from minidl.train import DEFAULTS


# ---- flag types ----------------------------------------------------------------------------------
def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
nonnegative_float = _number(float, lambda v: v >= 0, "a number >= 0")
momentum_float = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


# ---- the subcommands -----------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(
        prog="minidl",
        description="minidl: a from-scratch deep-learning engine for the ImageNet era of ConvNets.")
    parser.add_argument("--version", action="version", version=f"minidl {minidl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(sub)
    return parser, sub


def add_summary_parser(sub):
    p = sub.add_parser("summary", help="print a model's layer table (shapes, parameters, mult-adds, receptive fields)",
                       description="Print one row per layer of a model: output shape, parameters, multiply-adds "
                                   "per image and receptive field (size and jump), with totals.")
    p.add_argument("model", help="model name, e.g. alexnet, vgg16, googlenet, resnet50 (--list shows all)",
                   nargs="?")
    p.add_argument("--list", action="store_true", help="list the model names and exit")
    p.add_argument("--input-size", type=positive_int, nargs="+", metavar="N",
                   help="input height [width] (default: the size the model is drawn for, e.g. 227 for alexnet)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="number of classes (default: the model's)")
    p.add_argument("--depth", type=positive_int, default=None,
                   help="group rows: 1 = one row per child of the model (e.g. per Inception module)")
    p.add_argument("--eval", action="store_true", help="summarise eval mode (hides GoogLeNet's aux heads)")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args):
    from minidl import models
    if args.list or args.model is None:
        print("\n".join(f"{name:<22} input {'x'.join(map(str, shape))}" for name, (_, shape) in models.MODELS.items()))
        return 0 if args.list else 2
    if args.model not in models.MODELS:
        print(f"minidl summary: unknown model {args.model!r}; choose one of: {', '.join(models.MODELS)}",
              file=sys.stderr)
        return 2
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = models.get_model(args.model, **kwargs)
    if args.eval:
        model.eval()
    c, h, w = models.input_shape(args.model)
    if args.input_size:
        h = args.input_size[0]
        w = args.input_size[1] if len(args.input_size) > 1 else h
    print(models.summary(model, (c, h, w), depth=args.depth))
    return 0


def add_train_parser(sub):
    p = sub.add_parser("train", help="train a model (default: a small AlexNet-style net on the embedded digits)",
                       description="Train with SGD (momentum 0.9, weight decay 5e-4), checkpointing every epoch. "
                                   "Ends with the held-out 'top-1 error X.X%  top-5 error Y.Y%'.")
    p.add_argument("--model", default=None,
                   help="tiny_alexnet (default) or a name from `minidl summary --list`")
    p.add_argument("--data", default=None,
                   help="digits (default, embedded), cifar10 or imagenette (downloaded once into ~/.cache/minidl, "
                        "checksum verified), cifar10:PATH (python batches), or an image folder PATH "
                        "(PATH/<class>/<image>, or PATH/train and PATH/val)")
    p.add_argument("--epochs", type=positive_int, default=None, help=f"epochs (default {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"batch size (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=positive_float, default=None, help=f"learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--momentum", type=momentum_float, default=None,
                   help=f"SGD momentum (default {DEFAULTS['momentum']})")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None,
                   help=f"L2 weight decay (default {DEFAULTS['weight_decay']})")
    p.add_argument("--schedule", choices=("step", "plateau", "none"), default="step",
                   help="learning-rate schedule: step (/10 for the last third; default), plateau (/10 when the "
                        "held-out error stalls), none")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda (needs CuPy)")
    p.add_argument("--out", default=None,
                   help="run folder (default runs/<date-time>; runs/latest names it once an epoch has finished)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (default runs/latest) from its last checkpoint")
    p.add_argument("--seed", type=nonnegative_int, default=None, help=f"random seed (default {DEFAULTS['seed']})")
    p.add_argument("--workers", type=nonnegative_int, default=0,
                   help="threads decoding images in parallel (default 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress (default: a bar on a terminal, a plain line every few seconds otherwise)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over MPI ranks: start with `mpiexec -n N minidl train --distributed ...` "
                        "(needs the mpi extra); each rank takes --batch-size images per step, rank 0 writes")
    p.add_argument("--lr-scaling", choices=("linear", "none"), default="linear",
                   help="with --distributed: multiply --lr by the number of ranks (linear, Goyal et al. 2017; "
                        "default) or not (none)")
    p.add_argument("--warmup-epochs", type=nonnegative_float, default=0,
                   help="gradual warm-up of the learning rate over this many epochs (Goyal et al. used 5; default 0)")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="with --distributed: BatchNorm statistics over all ranks (default: per rank)")
    p.set_defaults(func=cmd_train)


def cmd_train(args):
    from minidl import train
    from minidl.distributed import launched_ranks
    rank, ranks = launched_ranks()
    if ranks > 1 and not args.distributed:  # else every rank would train alone, all in one run folder
        if rank == 0:
            print(f"minidl train: started by mpiexec as {ranks} ranks but without --distributed: add it "
                  f"(mpiexec -n {ranks} minidl train --distributed ...) to train one model on all of them",
                  file=sys.stderr)
        return 1
    try:
        run_training(model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                                 lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                 device=args.device, out=args.out, resume=args.resume, seed=args.seed,
                                 workers=args.workers, progress=False if args.no_progress else None,
                                 schedule=args.schedule, distributed=args.distributed, lr_scaling=args.lr_scaling,
                                 warmup_epochs=args.warmup_epochs, sync_batchnorm=args.sync_batchnorm)
    except KeyboardInterrupt as e:  # Ctrl-C: one line (from rank 0 alone), no traceback, the shell's 130
        if rank == 0:
            what = (interrupted_message(e) if isinstance(e, train.TrainingInterrupted)
                    else "interrupted before training started; nothing was written")
            print(f"minidl train: {what}", file=sys.stderr)
        return 130
    except (train.TrainingDiverged, CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minidl train: {e}", file=sys.stderr)
        if args.distributed:  # the other ranks would wait for this one forever: end the whole job
            from minidl.distributed import faults
            faults.abort_job(f"minidl train: {e}")
        return 1
    return 0


def add_eval_parser(sub):
    p = sub.add_parser("eval", help="top-1/top-5 error of a trained run on its held-out split",
                       description="Evaluate the weights of a `minidl train` run (its folder, model.npz or "
                                   "checkpoint.npz) on the held-out split of its data.")
    p.add_argument("run", nargs="?", default="runs/latest", help="run folder or weights file (default runs/latest)")
    p.add_argument("--ten-crop", action="store_true",
                   help="average softmax over ten crops (corners, centre and their mirrors), as AlexNet/ZFNet "
                        "(for the digits, which train without flips, the five unmirrored crops)")
    p.add_argument("--data", default=None, help="evaluate on another data spec with the same classes")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--workers", type=nonnegative_int, default=0)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args):
    try:
        run_evaluation(args.run, data=args.data, ten_crop=args.ten_crop, device=args.device,
                       batch_size=args.batch_size, workers=args.workers)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minidl eval: {e}", file=sys.stderr)
        return 1
    return 0


def add_classify_parser(sub):
    p = sub.add_parser("classify", help="top-5 classes with probabilities for image files",
                       description="Classify images with a `minidl train` run (its folder or weights file: its "
                                   "config gives model, classes and preprocessing), with an .npz of weights and "
                                   "--model, or with torchvision's ImageNet weights: --model NAME --pretrained "
                                   "(found in PyTorch's or minidl's cache, else downloaded; no PyTorch needed).")
    p.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    p.add_argument("--model", default=None, help="model name (needed with --pretrained and for weights without a "
                                                  "run folder); `minidl weights list` names those with weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="run folder, model.npz/checkpoint.npz, or an .npz of weights")
    src.add_argument("--pretrained", action="store_true",
                     help="torchvision's ImageNet weights for --model (downloaded once into the cache)")
    p.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args):
    from minidl import hub, pth, safepickle
    try:
        run_classify(args.images, model=args.model, weights=args.weights, pretrained=args.pretrained,
                     device=args.device, topk=args.top)
    except (CheckpointError, hub.DownloadError, pth.PthError, safepickle.UnsafePickleError, ValueError,
            FileNotFoundError, RuntimeError) as e:
        print(f"minidl classify: {e}", file=sys.stderr)
        return 1
    return 0


def add_weights_parser(sub):
    p = sub.add_parser("weights", help="torchvision's pretrained weights: list, download, convert .pth to .npz",
                       description="torchvision's ImageNet weights, read without PyTorch. Files are looked for in "
                                   "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints) and "
                                   "$MINIDL_HOME/checkpoints (default ~/.cache/minidl/checkpoints), and downloaded "
                                   "into the latter (SHA-256 checked) when missing.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    q = wsub.add_parser("list", help="the models with pretrained weights, their files and whether they are cached")
    q.set_defaults(func=cmd_weights_list)
    q = wsub.add_parser("download", help="download the weights of models into the cache (for offline use)")
    q.add_argument("models", nargs="+", metavar="MODEL")
    q.set_defaults(func=cmd_weights_download)
    q = wsub.add_parser("convert", help="a PyTorch .pth state dict -> .npz (loads with model.load / --weights)")
    q.add_argument("pth", metavar="FILE.pth")
    q.add_argument("npz", metavar="OUT.npz")
    q.add_argument("--model", default=None, help="check that the weights fit this model (e.g. resnet18)")
    q.set_defaults(func=cmd_weights_convert)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _weights_errors():
    from minidl import hub, pth, safepickle
    return (hub.DownloadError, pth.PthError, safepickle.UnsafePickleError, ValueError, FileNotFoundError, OSError)


def cmd_weights_list(args):
    from minidl import hub
    for name, file in hub.WEIGHTS.items():
        found = hub.find_cached(name)
        print(f"{name:<22} {file:<26} {found if found else 'not downloaded'}")
    return 0


def cmd_weights_download(args):
    from minidl import hub
    try:
        for name in args.models:
            print(f"{name}: {hub.weights_file(name)}")
    except _weights_errors() as e:
        print(f"minidl weights: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_weights_convert(args):
    import numpy as np
    from minidl import pth
    try:
        state = pth.load_state_dict(args.pth)
        if args.model is not None:
            from minidl import models
            try:
                models.get_model(args.model, num_classes=_num_classes(state, args.pth)).load_state_dict(state)
            except KeyError as e:
                raise ValueError(f"{args.pth} does not fit {args.model}: {e.args[0]}") from None
        out = args.npz if args.npz.endswith(".npz") else args.npz + ".npz"
        folder = os.path.dirname(os.path.abspath(out))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, **state)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except _weights_errors() as e:
        print(f"minidl weights: {e}", file=sys.stderr)
        return 1
    n = sum(int(v.size) for v in state.values())
    print(f"{args.pth} -> {out}: {len(state)} arrays, {n:,} numbers")
    return 0


# The subcommands, in the order `minidl --help` lists them: one add_<name>_parser each.
def add_assignments_parser(sub):
    from minidl.assignments.cli import add_parser  # the assignment track keeps its command beside its grader
    add_parser(sub)


SUBCOMMANDS = [
    add_summary_parser,
    add_train_parser,
    add_eval_parser,
    add_classify_parser,
    add_weights_parser,
    add_assignments_parser,
]


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
