"""Execute the lesson notebooks in fast mode and write the executed copies (outputs, figures) to lessons/executed/.

    python -m lessons.build                 # every lesson (from the repository root)
    python -m lessons.build 01 07           # only the lessons whose names start with these
    python -m lessons.build --full --out /tmp/full 01    # full mode (no MINIDL_FAST), elsewhere: timing runs

Each executed copy records the SHA-256 of the .py source it was run from
(``metadata.minidl_build.source_sha256``); tests/test_lessons.py fails when a source has changed
since its copy was built, so what a reader sees on GitHub is what the code computes today.
"""
import glob
import hashlib
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
EXECUTED = os.path.join(LESSONS, "executed")
# one thread per library, as the tests run the notebooks: spinning Numba/OpenBLAS pools made tiny
# fast-mode steps many times slower on a busy 2-core machine
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def source_sha256(notebook_path):
    """SHA-256 (hex) of the paired percent-format .py beside ``notebook_path``."""
    with open(os.path.splitext(notebook_path)[0] + ".py", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _children_cpu():
    """User + system CPU seconds of the finished child processes (POSIX; 0 elsewhere)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def notebooks(prefixes=()):
    paths = sorted(glob.glob(os.path.join(LESSONS, "[0-9][0-9]_*.ipynb")))
    if prefixes:
        paths = [p for p in paths if os.path.basename(p).startswith(tuple(prefixes))]
    return paths


def build(paths, timeout=600, full=False, out=EXECUTED):
    """Execute each notebook (fast mode unless ``full``, this interpreter's kernel) into ``out``; {name: seconds}."""
    import nbclient
    import nbformat
    from ipykernel.kernelspec import install

    if full and os.path.abspath(out) == EXECUTED:
        raise ValueError("lessons.build: --full runs go elsewhere (--out DIR): lessons/executed/ holds the fast-mode copies")
    os.makedirs(out, exist_ok=True)
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="minidl-lessons-") as prefix:
        install(kernel_name="minidl-lessons", prefix=prefix)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            filter(None, [os.path.join(prefix, "share", "jupyter"), os.environ.get("JUPYTER_PATH")]))
        if full:
            os.environ.pop("MINIDL_FAST", None)
        else:
            os.environ["MINIDL_FAST"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
        for k in THREADS:
            os.environ[k] = "1"
        for path in paths:
            name = os.path.basename(path)
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="minidl-lessons",
                                             resources={"metadata": {"path": LESSONS}})
            t0, cpu0 = time.perf_counter(), _children_cpu()
            client.execute()            # starts a kernel, runs every cell, shuts the kernel down
            seconds[name] = time.perf_counter() - t0
            cpu = _children_cpu() - cpu0    # the kernel's CPU time (and its MPI ranks'): a shared machine's
                                            # wall-clock time overstates what an idle one takes
            nb.metadata["minidl_build"] = {"source_sha256": source_sha256(path),
                                           "mode": "full" if full else "MINIDL_FAST=1"}
            nbformat.write(nb, os.path.join(out, name))
            size = os.path.getsize(os.path.join(out, name))
            print(f"{name}: {seconds[name]:.1f} s wall, {cpu:.1f} s CPU, {size / 1e6:.2f} MB", flush=True)
    return seconds


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m lessons.build", description=__doc__.splitlines()[0])
    ap.add_argument("lessons", nargs="*", help="name prefixes (01 07 ...); default: every lesson")
    ap.add_argument("--full", action="store_true", help="full mode (no MINIDL_FAST); needs --out")
    ap.add_argument("--out", default=EXECUTED, help="output folder (default lessons/executed)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = ap.parse_args(argv)
    paths = notebooks(args.lessons)
    if not paths:
        ap.error(f"no lesson notebook matches {args.lessons}")
    build(paths, args.timeout, args.full, args.out)


if __name__ == "__main__":
    main()
