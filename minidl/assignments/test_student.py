"""One test per task on the files in ``--student-dir`` (see conftest.py); the grader is the CLI's."""
import pytest

from minidl import assignments
from minidl.assignments.tasks import TASKS


@pytest.mark.parametrize("task", list(TASKS))
def test_task(task, student_dir):
    result = assignments.check_dir(student_dir, [task])[0]
    if not result.passed:
        pytest.fail(result.line(), pytrace=False)
