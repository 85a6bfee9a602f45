"""What ``import minidl`` sets up for the process: glibc keeps freed blocks for reuse (see minidl/__init__.py)."""
import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# Allocate and free a 48 MB array ten times and count the minor page faults that costs.
CHILD = """
import resource, numpy as np, minidl
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(12_000_000, dtype=np.float32)
    del a
print(minidl.KEEPS_FREED_MEMORY, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _child(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    p = subprocess.run([sys.executable, "-c", CHILD], env=dict(base, **env), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    keeps, faults = p.stdout.split()
    return keeps == "True", int(faults)


@glibc
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    keeps, faults = _child()
    off, faults_off = _child(MINIDL_KEEP_FREED_MEMORY="0")
    assert keeps and not off
    # without: each of the ten allocations is faulted in again (4,770 faults here: NumPy asks for huge
    # pages, so a fault may map 2 MB); with: only the first one is (412)
    assert faults * 4 < faults_off


@glibc
def test_the_users_malloc_settings_win():
    keeps, _ = _child(MALLOC_TRIM_THRESHOLD_="131072")
    assert not keeps
