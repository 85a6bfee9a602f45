"""minidl.pth: PyTorch checkpoints read with NumPy only; anything but tensors refused unexecuted."""
import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from minidl import pth, safepickle

REFERENCE = "pip install -e '.[reference]' (PyTorch's CPU build; see the README)"


class Payload:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_checkpoint(path, obj_bytes, storages=(), compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", obj_bytes)
        z.writestr("archive/byteorder", "little")
        for key, raw in storages:
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")


def _legacy_checkpoint(path, obj_bytes):
    with open(path, "wb") as f:
        for header in (pth.MAGIC_NUMBER, pth.PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(obj_bytes)
        pickle.dump([], f, protocol=2)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_a_global_other_than_tensors_is_refused_and_not_run(tmp_path, fmt):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    payload = pickle.dumps({"conv.weight": Payload(marker)}, protocol=2)
    (_zip_checkpoint if fmt == "zip" else _legacy_checkpoint)(path, payload)
    with pytest.raises(safepickle.UnsafePickleError) as e:
        pth.load(path)
    msg = str(e.value)
    assert str(path) in msg and "system" in msg and "nothing from the file was run" in msg
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes do run under pickle.load: the test would notice a leak
    assert marker.exists()


def test_refusal_reaches_the_command_line(tmp_path):
    import subprocess
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    _zip_checkpoint(path, pickle.dumps(Payload(marker), protocol=2))
    proc = subprocess.run([sys.executable, "-m", "minidl.cli", "weights", "convert", str(path), str(tmp_path / "o.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("minidl weights: ") and str(path) in proc.stderr and "os.system" not in proc.stdout
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])  # torch.save: stored
def test_reads_a_handmade_zip_checkpoint_without_torch(tmp_path, monkeypatch, compression):
    """The layout torch.save writes, built without torch: an OrderedDict of _rebuild_tensor_v2
    calls over persistent storage ids; two tensors share one storage, one of them transposed."""
    import types
    from collections import OrderedDict
    w = np.arange(6, dtype=np.float32)

    def rebuild(*args):
        raise AssertionError("only pickled, never called")

    class FloatStorage:
        pass

    class StorageRef:
        pass

    class Tensor:
        def __init__(self, offset, size, stride):
            self.args = (StorageRef(), offset, size, stride, False, OrderedDict())

        def __reduce__(self):
            return rebuild, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", 6) if isinstance(obj, StorageRef) else None

    # pickle writes a global as module + name after checking the module has it: fake modules
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    fake_utils._rebuild_tensor_v2, fake_torch.FloatStorage = rebuild, FloatStorage
    buf = io.BytesIO()
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "torch", fake_torch)
        mp.setitem(sys.modules, "torch._utils", fake_utils)
        Pickler(buf, protocol=2).dump(OrderedDict([("a", Tensor(0, (2, 3), (3, 1))), ("a_t", Tensor(0, (3, 2), (1, 3))),
                                                   ("tail", Tensor(4, (2,), (1,)))]))
    path = tmp_path / "hand.pth"
    _zip_checkpoint(path, buf.getvalue(), [("0", w.tobytes())], compression)
    state = pth.load_state_dict(path)
    np.testing.assert_array_equal(state["a"], w.reshape(2, 3))
    np.testing.assert_array_equal(state["a_t"], w.reshape(2, 3).T)
    np.testing.assert_array_equal(state["tail"], w[4:])
    assert all(v.flags.writeable for v in state.values())
    state["a"][0, 0] = 99  # a shared storage is copied: the other tensors do not change
    assert state["a_t"][0, 0] == 0


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_round_trip_every_dtype(tmp_path, legacy):
    torch = pytest.importorskip("torch", reason=f"writing .pth files needs PyTorch: {REFERENCE}")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    state = {"w": base, "t": base.t(), "row": base[1], "h": base.half(), "bf": base.bfloat16(),
             "d": base.double(), "i": torch.arange(5), "i32": torch.arange(3, dtype=torch.int32),
             "u8": torch.arange(3, dtype=torch.uint8), "b": torch.tensor([True, False]), "s": torch.tensor(3.5),
             "e": torch.zeros(0, 3), "p": torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / "all.pth"
    torch.save({"epoch": 2, "state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
    got = pth.load(path)
    assert got["epoch"] == 2
    for k, v in state.items():
        ref = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert got["state_dict"][k].dtype == ref.dtype and got["state_dict"][k].shape == ref.shape, k
        np.testing.assert_array_equal(got["state_dict"][k], ref)
    assert sorted(pth.load_state_dict(path)) == sorted(state)


def test_module_prefix_removed(tmp_path):
    torch = pytest.importorskip("torch", reason=f"writing .pth files needs PyTorch: {REFERENCE}")
    torch.save({"model": {"module.fc.weight": torch.ones(2, 2)}}, tmp_path / "dp.pth")
    assert list(pth.load_state_dict(tmp_path / "dp.pth")) == ["fc.weight"]


def test_truncated_and_foreign_files_are_named(tmp_path):
    torch = pytest.importorskip("torch", reason=f"writing .pth files needs PyTorch: {REFERENCE}")
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(1000)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(pth.PthError, match=r"w\.pth.*truncated"):
        pth.load(path)
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(pth.PthError, match=r"x\.pth: not a PyTorch checkpoint"):
        pth.load(tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        pth.load(tmp_path / "nowhere.pth")
    with zipfile.ZipFile(tmp_path / "s.pt", "w") as z:  # the layout of torch.jit.save
        for name in ("data.pkl", "constants.pkl", "code/__torch__.py", "version"):
            z.writestr(f"s/{name}", b"")
    with pytest.raises(pth.PthError, match="TorchScript"):
        pth.load(tmp_path / "s.pt")


def test_tensor_reaching_past_its_storage_is_corrupt(tmp_path):
    torch = pytest.importorskip("torch", reason=f"writing .pth files needs PyTorch: {REFERENCE}")
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(4)}, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data_key = next(n for n in members if "/data/" in n)
    members[data_key] = members[data_key][:8]  # 2 of the 4 floats
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(pth.PthError, match="w.pth"):
        pth.load(path)


def test_setting_state_on_an_allowed_global_is_refused(tmp_path):
    """BUILD on torch.FloatStorage (an allowed name) would change how every later file is read."""
    def uni(text):
        return b"X" + len(text).to_bytes(4, "little") + text.encode()
    evil = b"\x80\x02ctorch\nFloatStorage\n}" + uni("dtype") + uni("O") + b"sb."
    path = tmp_path / "build.pth"
    _zip_checkpoint(path, evil)
    with pytest.raises(safepickle.UnsafePickleError, match="refusing to set the state of a _StorageType"):
        pth.load(path)
    assert pth.ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == np.float32
