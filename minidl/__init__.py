"""minidl: a from-scratch deep-learning engine for the ImageNet era of ConvNets."""
__version__ = "0.1.0"

import os as _os

# Idle worker threads: after each call OpenBLAS's workers spin for up to ~0.1 s, and libgomp's (Numba's
# parallel kernels) spin too, so on a machine with few cores every kernel that follows a GEMM (and every
# GEMM that follows a kernel) fights a spinning thread for the core: a CIFAR-10 training step on 2 cores
# ran 1.3-1.5x slower than with both told to sleep at once (benchmarks/RESULTS.md). Both variables are
# read when the libraries load, so they are set here, first; a value already in the environment wins.
# OPENBLAS_THREAD_TIMEOUT only takes effect when minidl is imported before NumPy (the `minidl` command,
# or `import minidl` first); OMP_WAIT_POLICY also when NumPy came first (Numba loads OpenMP lazily).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from minidl.autograd import Tensor, Function, tensor, no_grad, enable_grad, is_grad_enabled  # noqa: F401
from minidl.random import manual_seed  # noqa: F401
from minidl.gradcheck import gradcheck, GradcheckError  # noqa: F401
from minidl.backend import gpu_available, set_tf32  # noqa: F401
from minidl import functional  # noqa: F401
from minidl import nn  # noqa: F401
from minidl import optim  # noqa: F401
from minidl import models  # noqa: F401
from minidl import data, metrics  # noqa: F401
