"""Every lesson notebook runs top to bottom in fast mode; its .py source, its executed copy and the slide map agree."""
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


# ---- the slide map: every slide of the lecture is covered by a named cell of a lesson --------------
LECTURE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "lecture.md")
README = os.path.join(LESSONS, "README.md")


def _slide_numbers(cell):
    """'2–6' -> [2, ..., 6]; '13' -> [13]; raises ValueError on anything else."""
    lo, _, hi = cell.strip().replace("-", "–").partition("–")
    return list(range(int(lo), int(hi or lo) + 1))


def _table(path, heading):
    """The rows (lists of stripped cells) of the first Markdown table after ``heading`` in ``path``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]                     # without the header row


def slide_map():
    """{slide: [(lesson, section), ...]} from the 'Slide map' table of lessons/README.md."""
    out = {}
    for slides, lesson, sections in _table(README, "## Slide map"):
        for n in _slide_numbers(slides):
            for sec in sections.split(";"):
                out.setdefault(n, []).append((lesson.strip("`"), sec.strip().strip('"')))
    return out


def test_slide_map_points_at_existing_cells():
    """Every (lesson, section) of the map names a notebook that exists and a heading in one of its Markdown cells."""
    mapping = slide_map()
    assert mapping, "lessons/README.md has no '## Slide map' table"
    for slide, targets in sorted(mapping.items()):
        for lesson, section in targets:
            path = os.path.join(LESSONS, lesson + ".ipynb")
            assert os.path.exists(path), f"slide {slide}: lessons/README.md maps it to {lesson}, which does not exist"
            nb = nbformat.read(path, as_version=4)
            headings = [line.lstrip("#").strip() for c in nb.cells if c.cell_type == "markdown"
                        for line in c.source.splitlines() if line.startswith("#")]
            assert any(section.lower() in h.lower() for h in headings), \
                f"slide {slide}: no heading containing {section!r} in {lesson} (headings: {headings})"


def test_every_slide_of_the_lecture_is_mapped():
    if not os.path.exists(LECTURE):
        pytest.skip(f"the lecture's slide map is not beside this checkout ({LECTURE})")
    with open(LECTURE, encoding="utf-8") as f:
        rows = [line.strip().strip("|").split("|") for line in f if line.startswith("|")]
    slides = [n for cells in rows[2:] for n in _slide_numbers(cells[0])]   # after the header and --- rows
    assert len(slides) > 30, f"read only {len(slides)} slides from {LECTURE}"
    missing = sorted(set(slides) - set(slide_map()))
    assert not missing, f"slides of {os.path.basename(LECTURE)} without a lesson in lessons/README.md's slide map: {missing}"


# ---- the executed copies a reader opens on GitHub are what the sources compute today -----------------
EXECUTED = os.path.join(LESSONS, "executed")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_executed_copy_is_current(path):
    """lessons/executed/NAME.ipynb was built (python -m lessons.build) from today's NAME.py, ran without an
    error, keeps well under 2 MB, and every figure is at least 400 px on its short side."""
    import base64
    import hashlib
    import io
    from PIL import Image
    name = os.path.basename(path)
    copy = os.path.join(EXECUTED, name)
    assert os.path.exists(copy), f"no executed copy of {name}: run python -m lessons.build {name[:2]}"
    with open(os.path.splitext(path)[0] + ".py", "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    nb = nbformat.read(copy, as_version=4)
    assert nb.metadata.get("minidl_build", {}).get("source_sha256") == want, \
        f"lessons/executed/{name} is older than {name[:-6]}.py: run python -m lessons.build {name[:2]}"
    assert os.path.getsize(copy) < 2_000_000, f"lessons/executed/{name} is {os.path.getsize(copy) / 1e6:.1f} MB"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"], f"lessons/executed/{name} holds an error output"
    for o in outputs:
        if "image/png" in o.get("data", {}):
            size = Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).size
            assert min(size) >= 400, f"lessons/executed/{name}: a figure of {size[0]}x{size[1]} px (want >= 400 px)"


def test_exercises_are_the_assignment_starters():
    """Each lesson exercise is an assignment task: its cell holds that task's starter stub as shipped
    (so the notebook and `minidl assignments start` hand out the same code) and is graded by
    `assignments.check` on the notebook's names, then by the worked solution."""
    import re
    from minidl import assignments
    graded = {}
    for path in NOTEBOOKS:
        with open(os.path.splitext(path)[0] + ".py", encoding="utf-8") as f:
            source = f.read()
        for task in re.findall(r'assignments\.check\("(\w+)", globals\(\)\)', source):
            graded[task] = os.path.basename(path)
            stub = assignments.starter_source(task)
            body = [ln for ln in stub.splitlines() if ln.strip() and not ln.startswith(("import ", "from "))]
            assert "\n".join(body) in "\n".join(ln for ln in source.splitlines() if ln.strip()), \
                f"{os.path.basename(path)}: the exercise cell of {task!r} is not the assignment's starter stub"
            assert re.search(rf'^assert assignments\.check\("{task}", solution\)\.passed$', source, re.M), \
                f"{os.path.basename(path)}: no code cell grading the worked solution of {task!r}"
    assert len(graded) >= 9, graded
