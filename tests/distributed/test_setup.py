"""minidl without MPI: imports, single-process answers, and a clear error when MPI is asked for."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NO_MPI = """
import sys
class Block:  # make `import mpi4py` fail, as on a machine without it
    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("No module named 'mpi4py' (blocked by the test)")
sys.meta_path.insert(0, Block())
import minidl, minidl.distributed as dist
from minidl import models
assert dist.rank() == 0 and dist.world_size() == 1 and dist.is_main()
assert "mpi4py" not in sys.modules
try:
    dist.init()
except RuntimeError as e:
    print("ERROR", e)
"""


def test_runs_without_mpi4py():
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK",
                                                             "PMIX_RANK", "MPI_LOCALRANKID")}
    out = subprocess.run([sys.executable, "-c", NO_MPI], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR distributed training needs mpi4py" in out.stdout
    assert 'pip install -e ".[mpi]"' in out.stdout


def test_mpiexec_command_shape():
    from minidl import distributed as dist
    if dist.find_mpiexec() is None:
        import pytest
        pytest.skip("no mpiexec: pip install -e '.[mpi]' (brings mpich's mpiexec)")
    cmd = dist.mpiexec_command(2, ["python3", "x.py"])
    assert cmd[-4:] == ["-n", "2", "python3", "x.py"]
    multi = dist.mpiexec_command(4, ["a"], hosts="h1:2,h2:2")
    assert "h1:2,h2:2" in multi and "-launcher" not in multi  # several hosts: MPI's own launcher
    if dist.mpiexec_flavour() == "mpich":
        assert cmd[1:3] == ["-launcher", "fork"]                  # one host: fork, no ssh or network
