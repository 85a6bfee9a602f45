"""The `minidl` command: --help and --version (subcommands are tested with their features)."""
import os
import subprocess
import sys

import pytest

import minidl
from minidl import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"minidl {minidl.__version__}"


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minidl") and "--version" in out


def test_no_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: minidl" in capsys.readouterr().out


def test_unknown_subcommand_fails(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2


def test_module_entry_point_runs():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "minidl.cli", "--version"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"minidl {minidl.__version__}"
