"""The pytest plugin for grading with CI: one test per task on the files in ``--student-dir``.

    pytest -p minidl.assignments.pytest_plugin --pyargs minidl.assignments --student-dir DIR

(``-k relu`` picks tasks). Installed with pip, minidl registers this plugin (entry point ``pytest11``),
and ``-p ...`` may be left out. A conftest.py could not do it: pytest reads options only from the
conftest files of the paths on the command line, before ``--pyargs`` turns the package into a path.
"""
import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--student-dir", action="store", default=None, metavar="DIR",
                     help="minidl assignments: the folder with the student's part*.py files to grade")


@pytest.fixture(scope="session")
def student_dir(request):
    folder = request.config.getoption("--student-dir")
    if folder is None:
        pytest.fail("minidl.assignments: give the folder to grade with --student-dir DIR", pytrace=False)
    if not os.path.isdir(folder):
        pytest.fail(f"minidl.assignments: --student-dir {folder} is not a folder", pytrace=False)
    return folder
