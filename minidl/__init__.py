"""minidl: a from-scratch deep-learning engine for the ImageNet era of ConvNets."""
__version__ = "0.1.0"

from minidl.autograd import Tensor, Function, tensor, no_grad, enable_grad, is_grad_enabled  # noqa: F401
from minidl.random import manual_seed  # noqa: F401
from minidl.gradcheck import gradcheck, GradcheckError  # noqa: F401
from minidl.backend import gpu_available, set_tf32  # noqa: F401
from minidl import functional  # noqa: F401
from minidl import nn  # noqa: F401
from minidl import optim  # noqa: F401
from minidl import models  # noqa: F401
from minidl import data, metrics  # noqa: F401
