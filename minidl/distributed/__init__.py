"""Training on several processes with MPI (through mpi4py), as Horovod and ChainerMN do.

Start N copies of a script with ``mpiexec -n N python3 script.py`` (or ``mpiexec -n N minidl
train --distributed``). Each copy is a *rank*; ``init()`` joins them into one job::

    import minidl.distributed as dist
    dist.init()                       # reads the MPI environment; installs the fault handlers
    dist.rank(), dist.world_size(), dist.is_main()

Data parallel (every rank holds the whole model, sees 1/N of each batch, gradients averaged):
``DataParallel`` (data_parallel.py) and ``DistributedSampler`` (sampler.py); BatchNorm with
statistics over all ranks: ``convert_sync_batchnorm`` (sync_batchnorm.py). Model parallel (each rank
holds part of the model): the collectives in comm.py as autograd Functions, and AlexNet's two towers
on two ranks (towers.py). Faults (faults.py): an exception on one rank aborts the whole job, naming
the rank; a watchdog aborts when a peer stops answering.

minidl imports and runs without mpi4py: only asking for a distributed feature needs it
(``pip install -e ".[mpi]"`` brings mpi4py and the ``mpich`` wheel, which ships ``mpiexec``).
"""
import os
import shutil
import subprocess
import sys

INSTALL_HINT = ('install it with: pip install -e ".[mpi]" (mpi4py and the mpich wheel, which ships mpiexec; '
                'any MPI that mpi4py supports works too)')

# Environment variables that MPI launchers set in every rank (MPICH/Hydra, Open MPI, PMIx, Slurm's PMI).
_LAUNCH_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID")

# One thread per rank: ranks share the machine's cores, so BLAS, OpenMP and Numba must not each
# start one thread per core in every rank.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "NUMBA_NUM_THREADS": "1"}

_comm = None        # the communicator of the job once init() ran
_mpi_error = None   # why mpi4py could not be imported, once known


def mpi():
    """The ``mpi4py.MPI`` module, or a RuntimeError that says why it is unavailable and how to install it."""
    global _mpi_error
    if _mpi_error is None:
        try:
            from mpi4py import MPI
            return MPI
        except Exception as e:  # ImportError, or an MPI library that fails to load
            _mpi_error = f"{type(e).__name__}: {e}"
    raise RuntimeError(f"distributed training needs mpi4py, which is not usable here ({_mpi_error}); {INSTALL_HINT}")


def unavailable_reason():
    """None when mpi4py and an ``mpiexec`` are usable, else a sentence saying what is missing."""
    try:
        mpi()
    except RuntimeError as e:
        return str(e)
    if find_mpiexec() is None:
        return f"mpi4py is installed but no mpiexec was found next to Python or on PATH; {INSTALL_HINT}"
    return None


def launched_by_mpi():
    """True in a process started by mpiexec/mpirun/srun (even before ``init``)."""
    return any(v in os.environ for v in _LAUNCH_VARS)


def launched_ranks():
    """(rank, size) mpiexec/mpirun gave this process, read from the environment without
    joining the job; (0, 1) in a plain run."""
    for rank_var, size_var in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                               ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rank_var in os.environ and size_var in os.environ:
            try:
                return int(os.environ[rank_var]), int(os.environ[size_var])
            except ValueError:
                pass
    return 0, 1


def init(watchdog=True, excepthook=True, comm=None):
    """Join the MPI job (idempotent) and return its communicator.

    excepthook: an uncaught exception on any rank prints the rank and the error, then aborts every
    rank (without it MPI waits forever for the failed rank). watchdog: a background thread that aborts
    the job when a peer has not been heard from for ``MINIDL_WATCHDOG_TIMEOUT`` seconds (default 120).
    """
    global _comm
    if _comm is not None:
        return _comm
    MPI = mpi()
    _comm = comm if comm is not None else MPI.COMM_WORLD
    if _comm.Get_size() > 1:
        _share_cores(_comm)
        from minidl.distributed import faults
        if excepthook:
            faults.install_excepthook(_comm)
        if watchdog:
            faults.start_watchdog(_comm)
    return _comm


def _share_cores(comm):
    """Ranks on one machine split its cores between their Numba thread pools (unless
    NUMBA_NUM_THREADS says otherwise), instead of each starting one thread per core."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    local = comm.Split_type(mpi().COMM_TYPE_SHARED)
    n_local = local.Get_size()
    local.Free()
    try:
        import numba
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // n_local)))
    except Exception:  # Numba missing or its pool already fixed: keep the default
        pass


def is_initialized():
    return _comm is not None


def get_comm():
    """The job's communicator: ``init()`` is called on first use."""
    return _comm if _comm is not None else init()


def rank():
    """This process's rank, 0 … world_size()-1 (0 in a plain, non-MPI run)."""
    if _comm is None and not launched_by_mpi():
        return 0
    return get_comm().Get_rank()


def world_size():
    """How many ranks the job has (1 in a plain, non-MPI run)."""
    if _comm is None and not launched_by_mpi():
        return 1
    return get_comm().Get_size()


def is_main():
    """True on rank 0, the rank that alone prints, logs and writes checkpoints."""
    return rank() == 0


def barrier():
    if world_size() > 1:
        get_comm().Barrier()


# ---- starting jobs: one helper for tests, benchmarks, lessons and docs -------------------------------------
def find_mpiexec():
    """The mpiexec next to this Python (the mpich wheel installs it there), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec") or shutil.which("mpirun")


_flavour = None


def mpiexec_flavour(mpiexec=None):
    """"mpich" (Hydra), "openmpi" or "other", from ``mpiexec --version``."""
    global _flavour
    if _flavour is None:
        try:
            out = subprocess.run([mpiexec or find_mpiexec(), "--version"], capture_output=True, text=True,
                                 timeout=20).stdout
        except Exception:
            out = ""
        _flavour = ("mpich" if "HYDRA" in out or "MPICH" in out else
                    "openmpi" if "Open MPI" in out or "OpenRTE" in out else "other")
    return _flavour


def mpiexec_command(n, args, hosts=None):
    """The argument list that starts ``args`` (a list) on ``n`` ranks.

    hosts: None for this machine, or "host1:2,host2:2"-style text for several machines (MPI's own
    host option; the machines need the same Python environment and passwordless ssh).
    On one machine, MPICH's Hydra forks the ranks itself (``-launcher fork``: no ssh, no network
    needed, which sandboxes and containers require); Open MPI is allowed to run as root and to start
    more ranks than cores.
    """
    exe = find_mpiexec()
    if exe is None:
        raise RuntimeError(unavailable_reason() or "no mpiexec found")
    flavour = mpiexec_flavour(exe)
    cmd = [exe]
    if flavour == "mpich":
        cmd += ["-hosts", hosts] if hosts else ["-launcher", "fork"]
    elif flavour == "openmpi":
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
        if hosts:
            cmd += ["--host", hosts]
    elif hosts:
        cmd += ["-hosts", hosts]
    return cmd + ["-n", str(int(n))] + [str(a) for a in args]


def run_ranks(n, args, timeout=120, env=None, threads=1, **kwargs):
    """Run ``args`` on ``n`` ranks of this machine and wait (``subprocess.run``; text output captured).

    Each rank gets ``threads`` BLAS/OpenMP/Numba threads. Raises ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds (the whole job is killed first, so nothing is left behind).
    """
    full_env = dict(os.environ if env is None else env)
    if threads is not None:
        full_env.update({k: str(threads) for k in ONE_THREAD_ENV})
    proc = subprocess.Popen(mpiexec_command(n, args), env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc):
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


from minidl.distributed.sampler import DistributedSampler, shard, shard_loader  # noqa: E402,F401  (no mpi4py needed)
from minidl.distributed.data_parallel import (DataParallel, DistributedOptimizer, broadcast_module,  # noqa: E402,F401
                                              average_gradients, scale_lr)
from minidl.distributed.sync_batchnorm import SyncBatchNorm2d, convert_sync_batchnorm  # noqa: E402,F401
