"""Tensor's operators and array-like methods: each is one of the ops of minidl.functional.

``minidl.autograd`` imports this module last, so every Tensor has them: ``a + b`` is
``math.add(a, b)``, ``x[i]`` is ``shape.getitem(x, i)``, ``x.to("cuda")`` is ``math.to_device``.
"""
from minidl import backend
from minidl.autograd import Tensor
from minidl.functional import activation, math, shape


def _reflected(op):
    return lambda self, other: op(other, self)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _axes(args):
    """reshape(2, 3) and reshape((2, 3)) alike."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def to(self, device):
    """A tensor on "cpu" or "cuda"; differentiable (gradients flow back to this device)."""
    device = backend.check_device(device)
    return self if device == self.device else math.to_device(self, device)


OPERATORS = {
    "__neg__": math.neg, "__add__": math.add, "__radd__": _reflected(math.add),
    "__sub__": math.sub, "__rsub__": _reflected(math.sub), "__mul__": math.mul, "__rmul__": _reflected(math.mul),
    "__truediv__": math.div, "__rtruediv__": _reflected(math.div),
    "__pow__": math.pow, "__rpow__": _reflected(math.pow),
    "__matmul__": math.matmul, "__rmatmul__": _reflected(math.matmul),
    "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "relu": activation.relu,
    "sum": math.sum, "mean": math.mean, "max": math.max, "astype": math.astype, "to": to,
    "__getitem__": shape.getitem, "broadcast_to": shape.broadcast_to,
    "reshape": lambda self, *shape_: shape.reshape(self, _axes(shape_)),
    "transpose": lambda self, *axes: shape.transpose(self, _axes(axes) or None),
    "T": property(lambda self: shape.transpose(self, None)),
    # comparisons give plain boolean arrays (no gradient), handy for metrics and masks
    "__gt__": lambda a, b: a.data > _raw(b), "__lt__": lambda a, b: a.data < _raw(b),
    "__ge__": lambda a, b: a.data >= _raw(b), "__le__": lambda a, b: a.data <= _raw(b),
}
for _name, _op in OPERATORS.items():
    setattr(Tensor, _name, _op)
