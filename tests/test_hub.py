"""minidl.hub: downloads from a local HTTP server (checksums, truncation, caches) and pretrained models."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from local_http import Server
from minidl import hub

REFERENCE = "pip install -e '.[reference]' (PyTorch's CPU build; see the README)"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty PyTorch and minidl caches under tmp_path (the user's real ones are never touched)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MINIDL_HOME", str(tmp_path / "minidl"))
    monkeypatch.delenv(hub.WEIGHTS_URL_ENV, raising=False)
    return tmp_path


def _leftovers(folder):
    return [f for f in os.listdir(folder)] if os.path.isdir(folder) else []


def test_download_checks_sha256_prefix(server, tmp_path):
    body = os.urandom(3 * hub.CHUNK + 17)
    digest = hashlib.sha256(body).hexdigest()
    server.files["w.pth"] = body
    dest = tmp_path / "out" / "w.pth"
    assert hub.download(f"{server.url}/w.pth", dest, sha256_prefix=digest[:8], progress=False, log=lambda m: None) == str(dest)
    assert dest.read_bytes() == body and _leftovers(tmp_path / "out") == ["w.pth"]


def test_wrong_checksum_leaves_nothing_and_names_url_and_path(server, tmp_path):
    server.files["w.pth"] = b"x" * 1000
    dest = tmp_path / "w.pth"
    url = f"{server.url}/w.pth"
    with pytest.raises(hub.DownloadError) as e:
        hub.download(url, dest, sha256_prefix="00000000", progress=False, log=lambda m: None)
    assert url in str(e.value) and str(dest) in str(e.value) and "checksum" in str(e.value)
    with pytest.raises(hub.DownloadError, match="MD5"):
        hub.download(url, dest, md5="0" * 32, progress=False, log=lambda m: None)
    assert _leftovers(tmp_path) == []


def test_truncated_transfer_leaves_nothing(server, tmp_path):
    server.files["w.pth"] = os.urandom(200_000)
    server.short.add("w.pth")
    url = f"{server.url}/w.pth"
    with pytest.raises(hub.DownloadError) as e:
        hub.download(url, tmp_path / "w.pth", progress=False, log=lambda m: None)
    assert url in str(e.value) and str(tmp_path / "w.pth") in str(e.value)
    assert _leftovers(tmp_path) == []


def test_missing_file_and_unreachable_server_are_named(server, tmp_path):
    url = f"{server.url}/nothing.pth"
    with pytest.raises(hub.DownloadError, match=r"nothing\.pth failed \(HTTP 404"):
        hub.download(url, tmp_path / "n.pth", progress=False, log=lambda m: None)
    import socket
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(hub.DownloadError, match=f"127.0.0.1:{port}/w.pth failed"):
        hub.download(f"http://127.0.0.1:{port}/w.pth", tmp_path / "w.pth", progress=False, log=lambda m: None)
    assert _leftovers(tmp_path) == []


def test_weights_file_downloads_once_then_uses_the_caches(server, caches, monkeypatch):
    body = b"weights" * 100
    name = f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    monkeypatch.setitem(hub.WEIGHTS, "resnet18", name)
    monkeypatch.setitem(hub.OLDER_NAMES, "resnet18", ())
    server.files[name] = body
    monkeypatch.setenv(hub.WEIGHTS_URL_ENV, server.url)
    path = hub.weights_file("resnet18", progress=False, log=lambda m: None)
    assert path == os.path.join(str(caches / "minidl"), "checkpoints", name) and server.requests == [name]
    assert hub.weights_file("resnet18", progress=False) == path and server.requests == [name]  # cached: no request
    # a file in PyTorch's own cache is preferred, and also not downloaded again
    torch_dir = caches / "torch" / "hub" / "checkpoints"
    torch_dir.mkdir(parents=True)
    (torch_dir / name).write_bytes(body)
    assert hub.weights_file("resnet18") == str(torch_dir / name) and server.requests == [name]


def test_published_file_names_carry_a_hash():
    for name, file in hub.WEIGHTS.items():
        assert file.endswith(".pth") and hub.HASH_IN_NAME.search(file), file
        assert hub.weights_url(name).startswith("https://download.pytorch.org/models/")


def test_pretrained_argument_checks():
    from minidl import models
    with pytest.raises(ValueError, match="num_classes=10"):
        models.resnet18(num_classes=10, pretrained=True)
    with pytest.raises(ValueError, match='variant="torchvision"'):
        models.alexnet(pretrained=True)
    with pytest.raises(ValueError, match='variant="torchvision"'):
        models.googlenet(pretrained=True)


def _torch_resnet18_file(folder, name="resnet18-f37072fd.pth"):
    torch = pytest.importorskip("torch", reason=f"writing the .pth needs PyTorch: {REFERENCE}")
    from minidl import models
    import minidl as md
    md.manual_seed(0)
    src = models.resnet18()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}, folder / name)
    return src, folder / name


def test_pretrained_constructor_loads_the_cached_file(caches, server, monkeypatch):
    from minidl import models
    src, _ = _torch_resnet18_file(caches / "torch" / "hub" / "checkpoints")
    monkeypatch.setenv(hub.WEIGHTS_URL_ENV, server.url)
    net = models.resnet18(pretrained=True)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v)
    assert server.requests == []


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "minidl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def test_classify_pretrained_and_weights_commands(caches, server, tmp_path):
    _, pth_file = _torch_resnet18_file(caches / "torch" / "hub" / "checkpoints")
    env = {"TORCH_HOME": str(caches / "torch"), "MINIDL_HOME": str(caches / "minidl"), hub.WEIGHTS_URL_ENV: server.url}
    img = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(img)
    proc = _cli("classify", str(img), "--model", "resnet18", "--pretrained", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert rows[0] == str(img) and len(rows) == 6
    names = [r.split("%", 1)[1].strip() for r in rows[1:]]
    assert all(n.endswith(")") and not n.startswith("class") for n in names)  # ImageNet names with their index
    assert server.requests == []                                            # found in PyTorch's cache

    # the same weights converted once to .npz classify the same way through --weights
    npz = tmp_path / "r18.npz"
    proc = _cli("weights", "convert", str(pth_file), str(npz), "--model", "resnet18", env=env)
    assert proc.returncode == 0 and npz.is_file(), proc.stderr
    proc2 = _cli("classify", str(img), "--model", "resnet18", "--weights", str(npz), env=env)
    assert proc2.returncode == 0 and proc2.stdout.strip().splitlines()[1:] == rows[1:], proc2.stderr

    proc = _cli("weights", "list", env=env)
    assert proc.returncode == 0 and str(pth_file) in proc.stdout and "alexnet-owt-7be5be79.pth" in proc.stdout


def test_classify_pretrained_download_failure_is_one_line(caches, server, tmp_path):
    server.files["vgg11-8a719046.pth"] = b"not the published file"
    env = {"TORCH_HOME": str(caches / "torch"), "MINIDL_HOME": str(caches / "minidl"), hub.WEIGHTS_URL_ENV: server.url}
    img = tmp_path / "p.png"
    Image.new("RGB", (40, 40)).save(img)
    proc = _cli("classify", str(img), "--model", "vgg11", "--pretrained", env=env)
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("minidl")]
    assert len(err) == 1 and err[0].startswith("minidl classify: download of ") and "classify: classify" not in err[0]
    assert f"{server.url}/vgg11-8a719046.pth" in err[0] and "checksum" in err[0]
    assert _leftovers(caches / "minidl" / "checkpoints") == []
    proc = _cli("classify", str(img), "--pretrained", env=env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("minidl classify: --pretrained needs --model")
    proc = _cli("weights", "convert", str(img), str(tmp_path / "o.npz"), env=env)
    assert proc.returncode == 1 and "p.png: not a PyTorch checkpoint" in proc.stderr


def test_classify_errors_have_one_prefix(tmp_path, capsys):
    from minidl import cli
    np.savez(tmp_path / "nofc.npz", w=np.zeros((2, 3, 3, 3), np.float32))
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    for argv in (["--model", "resnet18", "--weights", str(tmp_path / "nofc.npz")],
                 ["--weights", str(tmp_path / "nofc.npz")],
                 ["--model", "nin", "--pretrained"]):
        assert cli.main(["classify", str(tmp_path / "p.png"), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("minidl classify: ") and "classify: classify" not in err[0], err
