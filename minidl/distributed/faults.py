"""Faults: one rank failing must end the whole job quickly and say which rank failed — never a hang.

Without help, MPI hangs: a rank that raises exits, and the others wait forever in their next
collective for a partner that is gone (and MPI_Finalize waits for them). Two guards:

- ``install_excepthook``: an uncaught exception prints ``[minidl] rank R/N failed: <error>`` with
  the traceback, then ``Comm.Abort`` ends every rank with a non-zero status.
- ``start_watchdog``: a daemon thread exchanges a heartbeat with every peer over its own
  communicator. A peer silent for longer than the timeout (stopped, stuck in a dead node, killed in
  a way the launcher did not notice) makes the watchdog print which rank vanished and abort.
  A rank that finishes normally says goodbye first, so a slow peer is not mistaken for a dead one.
  (A rank *killed* outright is usually noticed by mpiexec itself, which then ends the job.)
"""
import atexit
import os
import sys
import threading
import time
import traceback

from minidl import distributed as dist

_installed = False
_watchdog = None


def report(comm, text):
    """Write one line naming this rank to stderr, flushed (the job may be killed right after)."""
    r, n = comm.Get_rank(), comm.Get_size()
    try:
        sys.stdout.flush()
    except Exception:
        pass
    sys.stderr.write(f"[minidl] rank {r}/{n} {text}\n")
    sys.stderr.flush()


# mpiexec forwards each rank's output asynchronously and tears everything down at Abort: without a
# short pause the line that names the failing rank was lost in about one run in three.
ABORT_GRACE_S = 0.5


def _abort(comm, code=1):
    time.sleep(ABORT_GRACE_S)
    comm.Abort(code)


def install_excepthook(comm):
    """Make an uncaught exception on this rank (main thread or any other) abort the whole job."""
    global _installed
    if _installed:
        return
    _installed = True

    def hook(etype, value, tb):
        if issubclass(etype, KeyboardInterrupt):
            report(comm, "interrupted; aborting the job")
        else:
            details = "".join(traceback.format_exception(etype, value, tb))
            report(comm, f"failed: {etype.__name__}: {value}; aborting the job\n{details}")
        try:
            _abort(comm, 1)
        finally:
            os._exit(1)  # Abort does not return; never fall through to a hang

    def thread_hook(args):
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook


class Watchdog(threading.Thread):
    """Heartbeats to and from every peer; abort when one is silent for ``timeout`` seconds."""

    HEARTBEAT, GOODBYE = 1, 2

    def __init__(self, comm, timeout, interval):
        super().__init__(name="minidl-watchdog", daemon=True)
        self.comm = comm.Dup()  # its own communicator: never mixes with the training's messages
        self.timeout, self.interval = timeout, interval
        self.me = self.comm.Get_rank()
        self.peers = [r for r in range(self.comm.Get_size()) if r != self.me]
        self.leaving = threading.Event()
        self.finished = threading.Event()

    def run(self):
        import numpy as np
        MPI = dist.mpi()
        beat = np.zeros(1, dtype=np.uint8)
        inbox = np.zeros(1, dtype=np.uint8)
        sends, gone, said_bye = [], set(), False
        last_seen = {p: time.monotonic() for p in self.peers}
        last_beat = 0.0
        status = MPI.Status()
        while True:
            now = time.monotonic()
            if self.leaving.is_set() and not said_bye:
                sends += [self.comm.Isend(beat, dest=p, tag=self.GOODBYE) for p in self.peers]
                said_bye = True
            elif not said_bye and now - last_beat >= self.interval:
                sends += [self.comm.Isend(beat, dest=p, tag=self.HEARTBEAT) for p in self.peers]
                last_beat = now
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                src, tag = status.Get_source(), status.Get_tag()
                self.comm.Recv(inbox, source=src, tag=tag)
                last_seen[src] = now
                if tag == self.GOODBYE:
                    gone.add(src)
            sends = [s for s in sends if not s.Test()]
            if said_bye and len(gone) == len(self.peers):
                break
            silent = [p for p in self.peers if p not in gone and now - last_seen[p] > self.timeout]
            if silent:
                report(self.comm, f"watchdog: rank {silent[0]} has not been heard from for "
                                  f"{now - last_seen[silent[0]]:.0f} s (it died or hangs); aborting the job")
                _abort(self.comm, 1)
            time.sleep(min(0.1, self.interval / 4))
        MPI.Request.Waitall(sends)
        self.finished.set()

    def stop(self, wait=None):
        """Say goodbye to the peers and wait (at most ``wait`` s) for theirs: called at normal exit."""
        self.leaving.set()
        self.finished.wait(wait)


def start_watchdog(comm, timeout=None, interval=1.0):
    """Start the heartbeat watchdog (once). timeout: seconds of silence before aborting; default from
    ``MINIDL_WATCHDOG_TIMEOUT`` or 120 (a long first Numba compile must not look like a death)."""
    global _watchdog
    if _watchdog is not None or comm.Get_size() == 1:
        return _watchdog
    MPI = dist.mpi()
    if MPI.Query_thread() != MPI.THREAD_MULTIPLE:
        report(comm, "warning: MPI was not initialised with MPI_THREAD_MULTIPLE; no watchdog")
        return None
    if timeout is None:
        timeout = float(os.environ.get("MINIDL_WATCHDOG_TIMEOUT", 120))
    _watchdog = Watchdog(comm, timeout, min(interval, timeout / 4))
    _watchdog.start()
    # atexit runs last-registered first, so this goodbye runs before mpi4py's MPI_Finalize
    atexit.register(_watchdog.stop)
    return _watchdog


def abort_job(message, code=1):
    """Print ``message`` naming this rank and end every rank of the job (when MPI is running)."""
    from minidl import distributed as dist
    if dist.is_initialized() and dist.world_size() > 1:
        comm = dist.get_comm()
        report(comm, f"failed: {message}; aborting the job")
        _abort(comm, code)
