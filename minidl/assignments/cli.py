"""``minidl assignments list | start DIR | check DIR [TASK ...] | train DIR``."""
import os
import shutil
import sys

from minidl import assignments
from minidl.assignments.tasks import FILES, TASKS


def add_parser(sub):
    p = sub.add_parser("assignments", help="the lecture's layers as assignments: list, start, check, train",
                       description="Implement the lecture's layers yourself and have them graded against "
                                   "minidl's own: `start DIR` copies the starter files, `check DIR` prints one "
                                   "verdict per task, `train DIR` trains TinyAlexNet with your layers.")
    cmds = p.add_subparsers(dest="assignments_command", metavar="ACTION")
    cmds.add_parser("list", help="the tasks in lecture order, with their files and the names each defines")
    s = cmds.add_parser("start", help="copy the starter files into DIR (never overwrites a file)")
    s.add_argument("dir")
    s.add_argument("--solutions", action="store_true",
                   help="copy the worked solutions instead (for lecturers: every task then passes)")
    c = cmds.add_parser("check", help="grade the files in DIR: one line per task, then a count")
    c.add_argument("dir")
    c.add_argument("tasks", nargs="*", metavar="TASK", help="tasks to check (default: all)")
    t = cmds.add_parser("train", help="train TinyAlexNet on the digits with your conv, ReLU, pooling, LRN, "
                                      "dropout, linear and loss, next to minidl's own layers")
    t.add_argument("dir")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: as `minidl train`)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default: as `minidl train`)")
    t.add_argument("--no-reference", action="store_true", help="skip the run with minidl's own layers")
    p.set_defaults(func=main, assignments_parser=p)


def cmd_list():
    width = max(map(len, TASKS))
    for t in TASKS.values():
        print(f"{t.name:<{width}}  {t.file:<22} {', '.join(t.names):<34} {t.title}")
    return 0


def cmd_start(folder, solutions=False):
    source = assignments.SOLUTIONS if solutions else assignments.STARTERS
    existing = [f for f in FILES if os.path.exists(os.path.join(folder, f))]
    if existing:
        print(f"minidl assignments start: {folder} already holds {', '.join(existing)}; nothing copied "
              f"(your work is never overwritten: move those files away or choose another folder)", file=sys.stderr)
        return 1
    os.makedirs(folder, exist_ok=True)
    for f in FILES:
        shutil.copyfile(os.path.join(source, f), os.path.join(folder, f))
    what = "solutions" if solutions else "starter files"
    print(f"copied the {what} into {folder}: {', '.join(FILES)}")
    print(f"next: fill in the stubs, then `minidl assignments check {folder}`")
    return 0


def cmd_check(folder, tasks):
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        print(f"minidl assignments check: unknown task {', '.join(map(repr, unknown))}; the tasks are: "
              f"{', '.join(TASKS)}", file=sys.stderr)
        return 2
    if not os.path.isdir(folder):
        print(f"minidl assignments check: {folder} is not a folder (`minidl assignments start {folder}` makes one)",
              file=sys.stderr)
        return 2
    results = assignments.check_dir(folder, tasks or None)
    width = max(len(r.task) for r in results)
    for r in results:
        print(r.line(width + 1))
        sys.stdout.flush()
    done = sum(r.passed for r in results)
    print(f"{done} of {len(results)} tasks done")
    return 0 if done == len(results) else 1


def main(args):
    action = args.assignments_command
    if action == "list":
        return cmd_list()
    if action == "start":
        return cmd_start(args.dir, args.solutions)
    if action == "check":
        return cmd_check(args.dir, args.tasks)
    if action == "train":
        from minidl.assignments import swap
        return swap.run(args.dir, epochs=args.epochs, seed=args.seed, reference=not args.no_reference)
    args.assignments_parser.print_help()
    return 2
