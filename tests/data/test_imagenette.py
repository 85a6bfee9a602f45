"""Imagenette: the download into the cache (local HTTP server, MD5) and `minidl train --data imagenette`."""
import hashlib
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from local_http import Server
from minidl import hub
from minidl.data import imagenette, presets


def write_imagenette(root, n_train=2, n_val=1):
    """imagenette2-160/{train,val}/<wnid>/*.JPEG with tiny random photos."""
    rng = np.random.default_rng(0)
    folder = root / imagenette.FOLDER
    for split, n in (("train", n_train), ("val", n_val)):
        for w in imagenette.WNIDS:
            (folder / split / w).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)).save(folder / split / w / f"{i}.JPEG")
    return folder


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_download_unpacks_once_and_checks_md5(tmp_path, server, monkeypatch):
    src = write_imagenette(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname=imagenette.FOLDER)
    server.files["imagenette2-160.tgz"] = buf.getvalue()
    monkeypatch.setenv(hub.DATA_URL_ENV, server.url)
    root, quiet = tmp_path / "cache", dict(progress=False, log=lambda m: None)
    with pytest.raises(hub.DownloadError, match=imagenette.IMAGENETTE_MD5):
        imagenette.download_imagenette(root, **quiet)
    assert os.listdir(root) == []
    folder = imagenette.download_imagenette(root, md5=hashlib.md5(buf.getvalue()).hexdigest(), **quiet)
    assert sorted(os.listdir(os.path.join(folder, "val"))) == list(imagenette.WNIDS)
    assert imagenette.download_imagenette(root, **quiet) == folder and len(server.requests) == 2


def test_config_names_the_classes():
    config = presets.data_config("imagenette")
    assert config["classes"][0] == "tench" and len(config["classes"]) == 10 and config["image_size"] == 160
    assert presets.parse_spec("cifar10") == ("cifar10", None)


def test_train_data_imagenette_uses_the_cache(tmp_path, server):
    write_imagenette(tmp_path / "home" / "data")
    env = dict(os.environ, MINIDL_HOME=str(tmp_path / "home"), **{hub.DATA_URL_ENV: server.url})
    proc = subprocess.run([sys.executable, "-m", "minidl.cli", "train", "--data", "imagenette", "--epochs", "1",
                           "--no-progress", "--batch-size", "10", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("top-1 error ")
    assert server.requests == []
