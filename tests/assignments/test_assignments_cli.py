"""`minidl assignments list | start | check | train` as a student runs them, and the pytest plugin."""
import os
import re
import subprocess
import sys

import pytest

from minidl import assignments
from minidl.assignments.tasks import FILES, TASKS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def minidl(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "minidl.cli", "assignments", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    hw, sol = base / "hw1", base / "sol"
    assert minidl("start", hw).returncode == 0
    assert minidl("start", sol, "--solutions").returncode == 0
    return hw, sol


def test_list_names_every_task_in_order():
    out = minidl("list")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert [r.split()[0] for r in rows] == list(TASKS)
    assert "MaxPool2d" in out.stdout and "part3_pool.py" in out.stdout


def test_start_copies_the_starters_and_never_overwrites(started):
    hw, _ = started
    assert sorted(os.listdir(hw)) == sorted(FILES)
    mine = hw / "part1_basics.py"
    mine.write_text("# my work\n")
    out = minidl("start", hw)
    assert out.returncode == 1 and "never overwritten" in out.stderr
    assert mine.read_text() == "# my work\n"
    with open(os.path.join(assignments.STARTERS, "part1_basics.py")) as f:
        mine.write_text(f.read())


def _verdict_lines(stdout):
    return [line for line in stdout.splitlines() if re.search(r"\bPASS\b", line)]


def test_check_unfinished_starters_has_no_pass_and_exit_1(started):
    hw, _ = started
    out = minidl("check", hw)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:len(TASKS)]] == list(TASKS)
    assert _verdict_lines(out.stdout) == []
    assert all(re.match(r"\S+\s+(NOT STARTED|FAIL)\b", line) for line in lines[:len(TASKS)])
    assert lines[-1] == f"0 of {len(TASKS)} tasks done"


def test_check_solutions_pass_is_only_a_verdict(started):
    _, sol = started
    out = minidl("check", sol)
    assert out.returncode == 0, out.stdout
    passed = _verdict_lines(out.stdout)
    assert len(passed) == len(TASKS)
    assert all(re.fullmatch(r"\S+\s+PASS", line) for line in passed)
    assert out.stdout.count("PASS") == len(TASKS)


def test_check_some_tasks_and_exit_status(started, tmp_path):
    hw, sol = started
    assert minidl("check", sol, "relu", "topk_error").returncode == 0
    out = minidl("check", hw, "relu")
    assert out.returncode == 1 and out.stdout.splitlines()[0].split()[:3] == ["relu", "NOT", "STARTED"]
    out = minidl("check", sol, "nosuch")
    assert out.returncode == 2 and "unknown task" in out.stderr
    out = minidl("check", tmp_path / "absent")
    assert out.returncode == 2 and "not a folder" in out.stderr


def test_check_missing_and_broken_files_say_which_file_and_line(tmp_path):
    assert minidl("start", tmp_path, "--solutions").returncode == 0
    (tmp_path / "part3_pool.py").unlink()
    src = (tmp_path / "part7_topk.py").read_text().splitlines()
    src.insert(5, "x = (")
    (tmp_path / "part7_topk.py").write_text("\n".join(src) + "\n")
    out = minidl("check", tmp_path, "max_pool", "topk_error", "relu")
    assert out.returncode == 1
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines()[:3])
    assert lines["max_pool"].startswith("ERROR") and "part3_pool.py" in lines["max_pool"]
    assert lines["topk_error"].startswith("ERROR") and "part7_topk.py line 6" in lines["topk_error"]
    assert lines["relu"] == "PASS"


def test_pytest_plugin_grades_a_folder(started, tmp_path):
    hw, sol = started
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "minidl.assignments.pytest_plugin",
            "--pyargs", "minidl.assignments", "-k", "relu or topk_error"]
    good = subprocess.run(base + ["--student-dir", str(sol)], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=600)
    assert good.returncode == 0 and "2 passed" in good.stdout, good.stdout + good.stderr
    bad = subprocess.run(base + ["--student-dir", str(hw)], capture_output=True, text=True, env=ENV,
                         cwd=tmp_path, timeout=600)
    assert bad.returncode == 1 and "2 failed" in bad.stdout and "NOT STARTED" in bad.stdout, bad.stdout
    none = subprocess.run(base, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert none.returncode != 0 and "--student-dir" in none.stdout
