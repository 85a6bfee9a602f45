"""The ``minidl`` command. Each subcommand is a function ``cmd_<name>(args)`` registered in ``build_parser``."""
import argparse
import sys

import minidl


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minidl",
        description="minidl: a from-scratch deep-learning engine for the ImageNet era of ConvNets.")
    parser.add_argument("--version", action="version", version=f"minidl {minidl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Subcommands register themselves here: add_<name>_parser(sub).
    add_summary_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    add_classify_parser(sub)
    from minidl.assignments.cli import add_parser as add_assignments_parser
    add_assignments_parser(sub)
    return parser, sub


def add_summary_parser(sub):
    p = sub.add_parser("summary", help="print a model's layer table (shapes, parameters, mult-adds, receptive fields)",
                       description="Print one row per layer of a model: output shape, parameters, multiply-adds "
                                   "per image and receptive field (size and jump), with totals.")
    p.add_argument("model", help="model name, e.g. alexnet, vgg16, googlenet, resnet50 (--list shows all)",
                   nargs="?")
    p.add_argument("--list", action="store_true", help="list the model names and exit")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N",
                   help="input height [width] (default: the size the model is drawn for, e.g. 227 for alexnet)")
    p.add_argument("--num-classes", type=int, default=None, help="number of classes (default: the model's)")
    p.add_argument("--depth", type=int, default=None,
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
    from minidl.train import DEFAULTS
    p = sub.add_parser("train", help="train a model (default: a small AlexNet-style net on the embedded digits)",
                       description="Train with SGD (momentum 0.9, weight decay 5e-4), checkpointing every epoch. "
                                   "Ends with the held-out 'top-1 error X.X%  top-5 error Y.Y%'.")
    p.add_argument("--model", default=None,
                   help="tiny_alexnet (default) or a name from `minidl summary --list`")
    p.add_argument("--data", default=None,
                   help="digits (default, embedded), cifar10:PATH (python batches), or an image folder PATH "
                        "(PATH/<class>/<image>, or PATH/train and PATH/val)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--momentum", type=float, default=None, help=f"SGD momentum (default {DEFAULTS['momentum']})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"L2 weight decay (default {DEFAULTS['weight_decay']})")
    p.add_argument("--schedule", choices=("step", "plateau", "none"), default="step",
                   help="learning-rate schedule: step (/10 for the last third; default), plateau (/10 when the "
                        "held-out error stalls), none")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda (needs CuPy)")
    p.add_argument("--out", default=None, help="run folder (default runs/<date-time>, linked as runs/latest)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (default runs/latest) from its last checkpoint")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {DEFAULTS['seed']})")
    p.add_argument("--workers", type=int, default=0, help="threads decoding images in parallel (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when not a TTY)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over MPI ranks: start with `mpiexec -n N minidl train --distributed ...` "
                        "(needs the mpi extra); each rank takes --batch-size images per step, rank 0 writes")
    p.add_argument("--lr-scaling", choices=("linear", "none"), default="linear",
                   help="with --distributed: multiply --lr by the number of ranks (linear, Goyal et al. 2017; "
                        "default) or not (none)")
    p.add_argument("--warmup-epochs", type=float, default=0,
                   help="gradual warm-up of the learning rate over this many epochs (Goyal et al. used 5; default 0)")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="with --distributed: BatchNorm statistics over all ranks (default: per rank)")
    p.set_defaults(func=cmd_train)


def cmd_train(args):
    from minidl import train
    try:
        train.run_training(model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, device=args.device,
                           out=args.out, resume=args.resume, seed=args.seed, workers=args.workers,
                           progress=False if args.no_progress else None, schedule=args.schedule,
                           distributed=args.distributed, lr_scaling=args.lr_scaling,
                           warmup_epochs=args.warmup_epochs, sync_batchnorm=args.sync_batchnorm)
    except (train.TrainingDiverged, train.CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
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
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args):
    from minidl import train
    try:
        train.run_evaluation(args.run, data=args.data, ten_crop=args.ten_crop, device=args.device,
                             batch_size=args.batch_size, workers=args.workers)
    except (train.CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minidl eval: {e}", file=sys.stderr)
        return 1
    return 0


def add_classify_parser(sub):
    p = sub.add_parser("classify", help="top-5 classes with probabilities for image files",
                       description="Classify images with trained weights: a `minidl train` run folder (its "
                                   "config gives model, classes and preprocessing) or, with --model, an .npz of "
                                   "weights such as converted torchvision ones (ImageNet preprocessing).")
    p.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    p.add_argument("--model", default=None, help="model name (needed for weights without a run folder)")
    p.add_argument("--weights", required=True, help="run folder, model.npz/checkpoint.npz, or an .npz of weights")
    p.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args):
    from minidl import train
    try:
        train.run_classify(args.images, model=args.model, weights=args.weights, device=args.device, topk=args.top)
    except (train.CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minidl classify: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
