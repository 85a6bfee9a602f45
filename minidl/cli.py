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
    return parser, sub


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
