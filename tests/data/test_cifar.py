"""CIFAR-10: batches read by the restricted unpickler (other globals refused, unexecuted), the
download into the cache (local HTTP server, MD5), and `minidl train --data cifar10`."""
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from local_http import Server
from minidl import hub
from minidl.data import CIFAR10, cifar


def write_batches(folder, n_train=4, n_test=3, seed=0):
    """Tiny batches as the real files hold them: Python 2 pickles (protocol 2) of a dict with bytes
    keys, a uint8 array (N, 3072), a list of labels, a list of file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in cifar.BATCHES:
        n = n_test if name == "test_batch" else n_train
        d = {b"batch_label": name.encode(), b"labels": [int(i) % 10 for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return folder


def tar_gz(files, top):
    """A .tar.gz (bytes) of ``files`` (a folder's contents) under ``top/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(files.iterdir()):
            tar.add(path, arcname=f"{top}/{path.name}")
    return buf.getvalue()


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_batches_read_without_pickle_load(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    train = CIFAR10(tmp_path, train=True)
    assert len(train) == 20 and train.data.dtype == np.uint8 and train.targets.tolist()[:4] == [0, 1, 2, 3]
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]   # our own file: the reference reading
    np.testing.assert_array_equal(train.data[4:8].reshape(4, -1), raw)


def test_a_batch_holding_another_global_is_refused_and_not_run(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "ran"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": Payload(marker)}, f, protocol=2)
    with pytest.raises(ValueError) as e:
        CIFAR10(tmp_path, train=False)
    msg = str(e.value)
    assert "test_batch" in msg and "system" in msg and "NumPy arrays" in msg and "nothing from the file was run" in msg
    assert not marker.exists()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_download_unpacks_once_and_checks_md5(tmp_path, server, monkeypatch):
    archive = tar_gz(write_batches(tmp_path / "src"), "cifar-10-batches-py")
    server.files["cifar-10-python.tar.gz"] = archive
    monkeypatch.setenv(hub.DATA_URL_ENV, server.url)
    root = tmp_path / "cache"
    quiet = dict(progress=False, log=lambda m: None)
    # the published MD5 does not match this home-made archive: refused, nothing kept
    with pytest.raises(hub.DownloadError) as e:
        cifar.download_cifar10(root, **quiet)
    assert f"{server.url}/cifar-10-python.tar.gz" in str(e.value) and cifar.CIFAR10_MD5 in str(e.value)
    assert os.listdir(root) == []
    folder = cifar.download_cifar10(root, md5=hashlib.md5(archive).hexdigest(), **quiet)
    assert folder == str(root / "cifar-10-batches-py") and sorted(os.listdir(root)) == ["cifar-10-batches-py"]
    assert len(CIFAR10(folder, train=False)) == 3
    assert cifar.download_cifar10(root, **quiet) == folder            # already there: not downloaded again
    assert server.requests == ["cifar-10-python.tar.gz"] * 2


def test_archive_escaping_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("cifar-10-batches-py/../../outside")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="refusing to unpack member"):
        hub.extract_tar(evil, tmp_path / "root", "cifar-10-batches-py")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "root" / "cifar-10-batches-py").exists()


def _train(tmp_path, env, *args):
    full = dict(os.environ, MINIDL_HOME=str(tmp_path / "home"), **env)
    return subprocess.run([sys.executable, "-m", "minidl.cli", "train", *args, "--epochs", "1", "--no-progress",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600, env=full)


def test_train_data_cifar10_uses_the_cache(tmp_path, server):
    write_batches(tmp_path / "home" / "data" / "cifar-10-batches-py", n_train=8, n_test=8)
    proc = _train(tmp_path, {hub.DATA_URL_ENV: server.url}, "--data", "cifar10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("top-1 error ")
    assert server.requests == []


def test_train_data_cifar10_download_failure_is_named(tmp_path, server):
    server.files["cifar-10-python.tar.gz"] = b"not the archive"
    proc = _train(tmp_path, {hub.DATA_URL_ENV: server.url}, "--data", "cifar10")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("minidl train: download of ") and f"{server.url}/cifar-10-python.tar.gz" in last
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path / "home" / "data") == []


def test_train_refuses_a_poisoned_batch(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "ran"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Payload(marker), b"labels": [0]}, f, protocol=2)
    proc = _train(tmp_path, {}, "--data", f"cifar10:{tmp_path}")
    assert proc.returncode == 1 and not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("minidl train: CIFAR10: ") and "data_batch_3" in last and "refusing" in last
