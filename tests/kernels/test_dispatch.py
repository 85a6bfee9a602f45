"""minidl.kernels itself: the family layout, backend choice, the Numba fallback, the CUDA sources."""
import configparser
import fnmatch
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from minidl import kernels
from minidl.kernels import _cuda

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_op_has_a_reference_a_numba_and_a_cuda_version_side_by_side():
    for name, family in kernels.FAMILIES.items():
        assert family.OPS, name
        for op in family.OPS:
            for prefix in kernels.BACKENDS:
                assert callable(getattr(family, f"{prefix}_{op}", None)), f"kernels/{name}.py lacks {prefix}_{op}"
        assert os.path.exists(os.path.join(_cuda.FOLDER, f"{name}.cu")), f"no kernels/cuda/{name}.cu"
        assert _cuda.kernel_names(name), f"kernels/cuda/{name}.cu defines no kernel"


def test_the_reference_is_never_the_implementation_it_checks():
    for family in kernels.FAMILIES.values():
        for op in family.OPS:
            ref = getattr(family, f"reference_{op}")
            assert getattr(family, f"numba_{op}") is not ref and getattr(family, f"cuda_{op}") is not ref, op


def test_no_cuda_kernel_uses_atomics():
    # atomics add in whatever order the threads arrive: gradients would differ from run to run
    for name in kernels.FAMILIES:
        assert not re.search(r"\batomic\w*\s*\(", _cuda.source(name)), f"kernels/cuda/{name}.cu uses an atomic"


def test_the_cuda_sources_are_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = cfg["options.package_data"]["minidl.kernels"].split(",")
    for f in os.listdir(_cuda.FOLDER):
        assert any(fnmatch.fnmatch(f"cuda/{f}", p.strip()) for p in patterns), f"{f} would not be installed"


def test_backend_is_chosen_by_the_array_and_names_are_checked():
    assert kernels.of(np.zeros(2)) is kernels.get("numba")
    assert kernels.get("reference").name == "reference"
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'"):
        kernels.get("gpu")


_CHECK = r"""
import warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    SETUP
    import minidl as md
    from minidl import functional as F, kernels
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)), requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, md.tensor(np.ones((2, 3, 3, 3))), padding=1)), 2)
    y.sum().backward()
    F.batch_norm(x, None, None, training=True).sum().backward()
mine = [str(w.message) for w in caught if "minidl" in str(w.message)]
print(len(mine))
print(kernels.numba_unavailable())
print(mine[0] if mine else "")
print(kernels.get("numba").max_pool_forward(np.arange(4.0).reshape(1, 1, 2, 2), kernels.Window(2, 2, 2, 2, 2, 2, 0, 0, 1, 1))[0].item())
"""


def _run(setup):
    code = _CHECK.replace("SETUP", setup)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_without_numba_the_reference_serves_after_exactly_one_warning():
    count, reason, message, value = _run("import sys; sys.modules['numba'] = None")
    assert count == "1" and "Numba could not be imported" in reason
    assert "fall back to the slow NumPy reference" in message
    assert value == "3.0"


def test_a_numba_that_fails_to_compile_falls_back_with_exactly_one_warning():
    setup = ("from numba.core.errors import TypingError\n"
             "    import minidl.kernels.relu as r\n"
             "    def broken(*a):\n"
             "        raise TypingError('simulated')\n"
             "    r.numba_relu_forward = broken")
    count, reason, message, value = _run(setup)
    assert count == "1" and "Numba failed in broken (TypingError: simulated" in reason
    assert value == "3.0"
