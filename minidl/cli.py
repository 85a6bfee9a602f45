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


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
