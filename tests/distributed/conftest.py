"""Distributed tests start ``mpiexec -n 2`` as a subprocess (via minidl.distributed.run_ranks, the one
place that knows mpiexec's flags) and read the ``RESULT {json}`` line rank 0 prints.
Ranks run this interpreter (``sys.executable``) and the mpiexec next to it, so the suite needs no
activated venv. Every test here is skipped, with the reason, where mpi4py or mpiexec is missing."""
import json
import os
import sys
import time

import pytest

from minidl import distributed as dist

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_workers.py")


def pytest_collection_modifyitems(config, items):
    reason = dist.unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs MPI (pip install -e '.[mpi]'): {reason}")
    for item in items:
        if "tests/distributed" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


class Run:
    def __init__(self, proc, seconds):
        self.returncode, self.stdout, self.stderr, self.seconds = proc.returncode, proc.stdout, proc.stderr, seconds

    @property
    def result(self):
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"no RESULT line (exit {self.returncode})\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-3000:]}"
        return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture
def mpirun():
    """mpirun(case, *json_args, n=2, timeout=60, env=None) -> Run (returncode, stdout, stderr, seconds, result)."""
    def run(case, *args, n=2, timeout=60, env=None, script=WORKERS):
        full_env = dict(os.environ, **(env or {}))
        t0 = time.monotonic()
        proc = dist.run_ranks(n, [sys.executable, script, case] + [json.dumps(a) for a in args],
                              timeout=timeout, env=full_env)
        return Run(proc, time.monotonic() - t0)
    return run
