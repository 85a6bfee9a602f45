"""Assignments: students write the lecture's layers; a grader compares them with minidl's own.

    minidl assignments list              the tasks, their files and the names each defines
    minidl assignments start hw1         copy the starter files into hw1/ (never overwrites)
    minidl assignments check hw1 [TASK]  one line per task: PASS, FAIL (why), NOT STARTED or ERROR
    minidl assignments train hw1         your layers inside TinyAlexNet, trained on the digits

In a notebook (``namespace`` a dict such as ``globals()``, or a module)::

    from minidl import assignments
    assignments.check("relu", globals())      # prints the verdict line, returns a Result (.passed)
    print(assignments.starter_source("relu"))  # the stub to start from

Starters are in minidl/assignments/starters/, solutions in the same layout in .../solutions/.
"""
import os

from minidl.assignments.grader import Result, Names, Missing, load_file, run_check  # noqa: F401
from minidl.assignments.tasks import TASKS, FILES  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
STARTERS = os.path.join(HERE, "starters")
SOLUTIONS = os.path.join(HERE, "solutions")


def _task(name):
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    return TASKS[name]


def check(task, namespace, verbose=True):
    """Grade one task on the names in ``namespace`` (a dict such as a notebook's ``globals()``, or a
    module); print its verdict line (unless ``verbose=False``) and return the Result."""
    t = _task(task)
    names = namespace if isinstance(namespace, Names) else Names(namespace, "your namespace")
    result = run_check(t, names)
    if verbose:
        print(result.line())
    return result


def solution(task):
    """The worked solution file of ``task``, loaded afresh exactly as a student's file is: its names
    (``solution(task).ReLU`` …) pass ``check`` and let a notebook go on after its exercise."""
    return load_file(os.path.join(SOLUTIONS, _task(task).file))


def check_dir(folder, tasks=None):
    """Grade the files in ``folder``: a Result per task (all tasks when ``tasks`` is None), in lecture order.
    Each file is loaded afresh for every task, so one task's state never leaks into another's."""
    names = list(TASKS) if not tasks else list(tasks)
    for n in names:
        _task(n)
    results = []
    for n in names:
        t = TASKS[n]
        try:
            ns = load_file(os.path.join(folder, t.file))
        except Missing as e:
            results.append(Result(n, "ERROR", str(e)))
            continue
        results.append(run_check(t, ns))
    return results


def _extract(source, names):
    """The top-level blocks (imports, functions, classes) of ``source`` defining ``names``, with the
    file's imports first."""
    import ast
    tree = ast.parse(source)
    lines = source.splitlines()
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and (
                node.name in names or node.name.startswith("pool_output_size")):
            keep.append(node)
    parts = []
    for node in keep:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        parts.append("\n".join(lines[start - 1:node.end_lineno]))
    imports = [p for p, n in zip(parts, keep) if isinstance(n, (ast.Import, ast.ImportFrom))]
    bodies = [p for p, n in zip(parts, keep) if not isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(imports) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"


def starter_source(task):
    """The starter code of ``task`` as text: its file's imports and the stubs of the names it defines."""
    t = _task(task)
    with open(os.path.join(STARTERS, t.file), encoding="utf-8") as f:
        source = f.read()
    return _extract(source, t.names)


__all__ = ["check", "check_dir", "starter_source", "Result", "TASKS", "FILES", "STARTERS", "SOLUTIONS"]
