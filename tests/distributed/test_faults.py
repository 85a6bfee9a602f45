"""A failing rank ends the whole job quickly, non-zero, and says which rank failed."""
import pytest

pytestmark = pytest.mark.mpi


def test_exception_on_one_rank_aborts_the_job(mpirun):
    run = mpirun("fault", 1, 3, "raise", timeout=60)
    assert run.returncode != 0
    assert run.seconds < 30
    assert "rank 1/2 failed: RuntimeError: deliberate failure at step 3" in run.stderr
    assert "RESULT" not in run.stdout


def test_watchdog_aborts_when_a_peer_vanishes(mpirun):
    # rank 1 stops itself (SIGSTOP): it neither exits nor answers; mpiexec alone would wait forever
    run = mpirun("fault", 1, 3, "stop", timeout=60, env={"MINIDL_WATCHDOG_TIMEOUT": "3"})
    assert run.returncode != 0
    assert run.seconds < 30
    assert "watchdog: rank 1 has not been heard from" in run.stderr
