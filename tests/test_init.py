"""What ``import minidl`` sets up for the process (minidl/__init__.py): glibc keeps freed blocks for reuse, and
OpenBLAS's idle workers sleep at once even when NumPy was imported first."""
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


# After a GEMM, OpenBLAS's idle worker spins (burning CPU) until its timeout; measure the CPU time the
# process uses while the main thread sleeps.
SPIN = """
import sys, time
import numpy as np
a = np.ones((1500, 1500), np.float32)
a @ a                      # NumPy's OpenBLAS starts its workers with the default timeout
if sys.argv[1] == "import":
    import minidl
    print(minidl.RESTARTED_BLAS_POOLS)
else:
    print(0)
spins = []
for _ in range(3):
    a @ a
    c0 = time.process_time()
    time.sleep(0.3)
    spins.append(time.process_time() - c0)
print(min(spins))
"""


def _spin(mode):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS",
                                                              "OPENBLAS_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", SPIN, mode], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    pools, spin = p.stdout.split()
    return int(pools), float(spin)


@pytest.mark.skipif(platform.system() != "Linux" or (os.cpu_count() or 1) < 2, reason="Linux, 2+ cores")
def test_numpy_imported_first_gets_its_blas_workers_restarted_to_sleep_at_once():
    threadpool_info = pytest.importorskip("threadpoolctl").threadpool_info
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    if not blas or blas[0]["internal_api"] != "openblas" or blas[0].get("threading_layer") != "pthreads":
        pytest.skip("NumPy's BLAS is not OpenBLAS with its own pthreads pool")
    _, spin_before = _spin("plain")
    if spin_before < 0.03:
        pytest.skip(f"OpenBLAS's idle spin is not visible here ({spin_before:.3f} s of CPU in 0.3 s asleep)")
    pools, spin_after = _spin("import")
    # measured: about 0.10 s of CPU (the 2^28-cycle default) before, 0.0001 s after
    assert pools >= 1
    assert spin_after < spin_before / 4, (spin_before, spin_after)
