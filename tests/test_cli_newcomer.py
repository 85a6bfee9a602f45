"""The command line a newcomer trusts: each behaviour run as the real `minidl` command in a subprocess
(``python -m minidl.cli``), on the embedded digits with small settings."""
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from minidl.data import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL = re.compile(r"^top-1 error \d+\.\d%  top-5 error \d+\.\d%$", re.M)


def env(**extra):
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


def minidl(*args, cwd, timeout=300, **extra_env):
    return subprocess.run([sys.executable, "-m", "minidl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env(**extra_env), timeout=timeout)


class Live:
    """A `minidl` process whose stdout is read line by line while it runs."""

    def __init__(self, *args, cwd):
        self.proc = subprocess.Popen([sys.executable, "-m", "minidl.cli", *map(str, args)], cwd=cwd, env=env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.seen = queue.Queue(), []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        self.proc.kill()
        err = self.close()[1]
        pytest.fail(f"no line matching {pattern!r}; stdout:\n{''.join(self.seen)}\nstderr:\n{err}")

    def interrupt(self, timeout=120):
        self.proc.send_signal(signal.SIGINT)
        return self.close(timeout)

    def close(self, timeout=120):
        """(exit status, stderr) once the process has ended; its pipes closed."""
        err = self.proc.stderr.read()
        code = self.proc.wait(timeout)
        self.reader.join(timeout)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, err


def good_run(runs):
    """A finished run folder beside the unfinished ones (its files need only exist for the hints)."""
    (runs / "good").mkdir(parents=True)
    (runs / "good" / "config.json").write_text("{}")
    (runs / "good" / "model.npz").write_bytes(b"")
    (runs / "latest").symlink_to("good")


def test_meaningless_flag_values_are_refused_naming_the_flag(tmp_path):
    for args, flag in ((["train", "--batch-size", "-3"], "--batch-size"), (["train", "--epochs", "0"], "--epochs"),
                       (["train", "--lr", "0"], "--lr"), (["train", "--momentum", "1.5"], "--momentum"),
                       (["eval", "--batch-size", "0"], "--batch-size")):
        out = minidl(*args, cwd=tmp_path, timeout=120)
        assert out.returncode == 2, (args, out.stderr)
        last = out.stderr.strip().splitlines()[-1]
        assert f"argument {flag}:" in last and "DataLoader" not in out.stderr, last
    assert not (tmp_path / "runs").exists()


def test_summary_of_the_default_net(tmp_path):
    out = minidl("summary", "tiny_alexnet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "total parameters:       215,370" in out.stdout and "input 1x32x32" in minidl(
        "summary", "--list", cwd=tmp_path, timeout=120).stdout


def test_first_run_compiles_prints_plain_progress_links_latest_and_modes(tmp_path):
    cache = tmp_path / "numba-cache"   # an empty Numba cache: a first run on a fresh install
    out = minidl("train", "--epochs", "1", "--batch-size", "64", cwd=tmp_path, NUMBA_CACHE_DIR=str(cache))
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"^compiling the CPU kernels .*first run only", out.stdout, re.M), out.stdout
    # stdout is a pipe, not a terminal: plain progress lines, no tqdm bar in stderr
    assert re.search(r"^  epoch 1/1  batch 1/\d+  loss \d+\.\d+  train error", out.stdout, re.M), out.stdout
    assert "\r" not in out.stderr and "it/s" not in out.stderr
    assert FINAL.search(out.stdout)
    runs = tmp_path / "runs"
    (name,) = [n for n in os.listdir(runs) if n != "latest"]
    assert os.readlink(runs / "latest") == name
    modes = {f: os.stat(runs / name / f).st_mode & 0o777 for f in os.listdir(runs / name)}
    assert len(set(modes.values())) == 1, modes   # model.npz is written like every other run file
    # the cache is warm now: no compiling message; a run that learns nothing says so
    again = minidl("train", "--epochs", "1", "--batch-size", "64", "--lr", "1e-9", "--no-progress", cwd=tmp_path,
                   NUMBA_CACHE_DIR=str(cache))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "compiling" not in again.stdout and "batch 1/" not in again.stdout
    assert re.search(r"chance level for 10 classes \(guessing: 90\.0%\)", again.stdout), again.stdout


def test_an_exploding_loss_is_divergence_and_leaves_latest_alone(tmp_path):
    good_run(tmp_path / "runs")
    out = minidl("train", "--lr", "50", "--epochs", "2", "--no-progress", cwd=tmp_path)
    assert out.returncode == 1
    assert "diverged" in out.stderr and "over 10x the loss of guessing" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(os.listdir(tmp_path / "runs")) == ["good", "latest"]   # its config-only folder is gone
    assert os.readlink(tmp_path / "runs" / "latest") == "good"


def test_folders_without_weights_say_what_is_missing_and_name_the_usable_run(tmp_path):
    runs = tmp_path / "runs"
    good_run(runs)
    (runs / "killed").mkdir()
    config = dict(presets.data_config("digits"), model="tiny_alexnet", batch_size=32, seed=0)
    (runs / "killed" / "config.json").write_text(json.dumps(config))   # all that a killed run leaves
    (tmp_path / "x.png").write_bytes(b"")
    for args in (["eval", "runs/killed"], ["classify", "x.png", "--weights", "runs/killed"],
                 ["train", "--resume", "--out", "runs/killed"]):
        out = minidl(*args, cwd=tmp_path, timeout=120)
        assert out.returncode == 1, (args, out.stderr)
        err = out.stderr.strip()
        assert len(err.splitlines()) == 1 and "runs/killed" in err, err
        assert "checkpoint.npz" in err and "stopped before it finished an epoch" in err, err
        assert "the latest usable run is runs/good" in err, err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    out = minidl("eval", cwd=fresh, timeout=120)
    assert out.returncode == 1 and "runs/latest does not exist" in out.stderr and "minidl train" in out.stderr


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    run = Live("train", "--epochs", "30", "--batch-size", "128", "--out", "run", "--no-progress", cwd=tmp_path)
    run.wait_for(r"^epoch 1/30 ")                 # the first epoch is checkpointed
    code, err = run.interrupt()
    assert code == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(r"interrupted in epoch \d+ \(step \d+\); the checkpoint of epoch \d+ \(run/checkpoint\.npz\) "
                     r"is intact; continue with: minidl train --resume --out run$", err.strip()), err
    resumed = minidl("train", "--resume", "--out", "run", "--epochs", "2", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]


def test_big_model_on_small_images_says_the_size_and_ctrl_c_before_an_epoch(tmp_path):
    good_run(tmp_path / "runs")
    run = Live("train", "--model", "alexnet", "--epochs", "1", cwd=tmp_path)
    note = run.wait_for(r"^note: ")
    assert "227x227" in note and "32x32" in note and re.search(r"~\d+ (min|s) on this CPU", note), note
    code, err = run.interrupt()
    assert code == 130 and "Traceback" not in err, err
    assert "nothing to resume" in err or "before training started" in err, err
    assert sorted(os.listdir(tmp_path / "runs")) == ["good", "latest"]   # no config-only folder left behind
    assert os.readlink(tmp_path / "runs" / "latest") == "good"


def test_a_killed_first_epoch_leaves_runs_latest_alone(tmp_path):
    good_run(tmp_path / "runs")
    run = Live("train", "--epochs", "2", cwd=tmp_path)     # stdout is a pipe: plain progress lines
    run.wait_for(r"^  epoch 1/2  batch 1/")
    run.proc.kill()                                         # SIGKILL: no chance to clean up
    run.close()
    left = [n for n in os.listdir(tmp_path / "runs") if n not in ("good", "latest")]
    assert len(left) == 1 and os.listdir(tmp_path / "runs" / left[0]) == ["config.json"]
    assert os.readlink(tmp_path / "runs" / "latest") == "good"
