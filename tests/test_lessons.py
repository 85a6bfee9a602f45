"""Every lesson notebook runs top to bottom in fast mode (MINIDL_FAST=1) without an error."""
import glob
import os
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "lessons")
NOTEBOOKS = sorted(glob.glob(os.path.join(LESSONS, "[0-9][0-9]_*.ipynb")))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for *this* interpreter in a temporary Jupyter path (works in a fresh venv too)."""
    from ipykernel.kernelspec import install
    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="minidl-test", prefix=str(prefix))
    # one thread per library: on a busy CI machine, spinning Numba/OpenBLAS thread pools made the tiny
    # fast-mode steps up to 50x slower (measured: 2.3 s vs 0.04 s for one epoch of 128 digits)
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MINIDL_FAST", "PYTHONPATH") + threads}
    for k in threads:
        os.environ[k] = "1"
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(prefix / "share" / "jupyter"), old["JUPYTER_PATH"]]))
    os.environ["MINIDL_FAST"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, old["PYTHONPATH"]]))
    yield "minidl-test"
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_all_lessons_are_present():
    names = [os.path.basename(p)[:2] for p in NOTEBOOKS]
    assert names == [f"{i:02d}" for i in range(1, len(names) + 1)] and len(names) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "store notebooks without outputs"
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name=kernel_env,
                                     resources={"metadata": {"path": LESSONS}})
    t0 = time.perf_counter()
    client.execute()            # raises CellExecutionError (with the cell and traceback) on any error
    print(f"{os.path.basename(path)}: {time.perf_counter() - t0:.1f} s")


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_and_its_py_source_agree(path):
    """Each notebook is paired (jupytext) with a percent-format .py beside it: the reviewed source.

    A lecturer edits either one in Jupyter (the pair is saved together); editing one outside
    Jupyter and not the other fails here: `jupytext --sync lessons/*.ipynb` repairs it."""
    jt = pytest.importorskip("jupytext", reason="pip install jupytext (or -e '.[test]')")
    source = os.path.splitext(path)[0] + ".py"
    assert os.path.exists(source), f"{os.path.basename(path)} has no paired {os.path.basename(source)}"
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", \
        f"{os.path.basename(path)} is not paired: jupytext --set-formats ipynb,py:percent {path}"
    assert _cells(nb) == _cells(jt.read(source)), \
        f"{os.path.basename(path)} and {os.path.basename(source)} differ: run jupytext --sync {path}"
