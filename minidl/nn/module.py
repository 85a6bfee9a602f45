"""Module, Parameter and Sequential: parameters, buffers, state dicts, train/eval, device moves."""
import os
import tempfile
from collections import OrderedDict

import numpy as np

from minidl import backend
from minidl.autograd import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates (requires_grad=True)."""

    def __init__(self, data, requires_grad=True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


# BatchNorm's counter in torchvision state dicts: accepted on load, never needed for the math.
IGNORED_ON_LOAD = ("num_batches_tracked",)


class Module:
    """Base class of layers and models. Subclasses set Parameters, buffers and sub-Modules as
    attributes in ``__init__`` and write ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before setting attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # a buffer stays a buffer when reassigned
            return
        # as PyTorch: a parameter takes a Parameter (or None), a child module a Module (or None);
        # anything else would silently drop it from parameters(), the optimiser and the state dict
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as parameter {name!r} "
                            f"(nn.Parameter or None expected; wrap it: nn.Parameter(array), or del it first)")
        if name in self._modules and value is not None and not isinstance(value, Module):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as child module {name!r} "
                            f"(nn.Module or None expected, or del it first)")
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """A state array that is saved in state_dict but not trained (BatchNorm's running stats)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ------------------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        """(name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items() if c is not None]
            stack.extend(reversed(kids))

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for mname, m in self.named_modules():
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), m, bname

    def num_parameters(self):
        return int(sum(p.size for p in self.parameters()))

    def apply(self, fn):
        for m in self.modules():
            fn(m)
        return self

    # ---- modes, gradients, devices ----------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move parameters, their gradients and buffers to "cpu" or "cuda" (in place); returns self."""
        device = backend.check_device(device)
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = backend.to_device(p.grad, device)
        for _, m, bname in list(self.named_buffers()):
            object.__setattr__(m, bname, backend.to_device(getattr(m, bname), device))
        return self

    @property
    def device(self):
        ps = self.parameters()
        return ps[0].device if ps else "cpu"

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """Ordered name -> host numpy array for every parameter and buffer (torchvision's key names)."""
        out = OrderedDict()
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is not None:
                    out[f"{mname}.{pname}" if mname else pname] = backend.as_numpy(p.data)
            for bname in m._buffers:
                out[f"{mname}.{bname}" if mname else bname] = backend.as_numpy(getattr(m, bname))
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays (numpy, cupy, or anything with ``.numpy()``) into this module's parameters and buffers.

        Raises KeyError naming missing / unexpected keys (when ``strict``) and ValueError naming a key
        whose shape differs. Nothing is changed unless every key checks out.
        """
        own = {}
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is not None:
                    own[f"{mname}.{pname}" if mname else pname] = (m, pname, True)
            for bname in m._buffers:
                own[f"{mname}.{bname}" if mname else bname] = (m, bname, False)
        given = {k: _to_array(v) for k, v in state.items()}
        missing = [k for k in own if k not in given and not k.endswith(IGNORED_ON_LOAD)]
        unexpected = [k for k in given if k not in own and not k.endswith(IGNORED_ON_LOAD)]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected[:10])}{' …' if len(unexpected) > 10 else ''}")
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        updates = []
        for k, v in given.items():
            if k not in own:
                continue
            m, attr, is_param = own[k]
            current = getattr(m, attr).data if is_param else getattr(m, attr)
            if tuple(v.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict into {type(self).__name__}: key {k!r} has shape "
                                 f"{tuple(v.shape)} in the state dict but {tuple(current.shape)} in the model")
            updates.append((m, attr, is_param, v, current))
        for m, attr, is_param, v, current in updates:
            xp = backend.xp_of(current)
            value = xp.asarray(backend.to_device(v, backend.device_of(current)), dtype=current.dtype).copy()
            if is_param:
                getattr(m, attr).data = value
            else:
                object.__setattr__(m, attr, value)
        return self

    def save(self, path):
        """Write the state dict to ``path`` as .npz (atomically: a temp file renamed into place)."""
        save_npz(path, self.state_dict())

    def load(self, path, strict=True):
        """Load a state dict written by ``save``."""
        with np.load(path, allow_pickle=False) as f:
            return self.load_state_dict({k: f[k] for k in f.files}, strict=strict)

    # ---- printing -------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                lines.append("  (" + name + "): " + repr(m).replace("\n", "\n  "))
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


def _to_array(v):
    if hasattr(v, "detach") and hasattr(v, "numpy") and not isinstance(v, Tensor):  # a torch tensor
        return v.detach().cpu().numpy()
    if isinstance(v, Tensor):
        return v.data
    if backend._is_cupy_array(v):
        return v
    return np.asarray(v)


def save_npz(path, arrays):
    """np.savez to a temporary file in the same folder, then rename: never a half-written file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: backend.as_numpy(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", … as in PyTorch."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __getitem__(self, i):
        if isinstance(i, slice):  # keeps the children's names, as PyTorch does
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
