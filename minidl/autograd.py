"""The autograd core: ``Tensor`` (data, grad, creator) and ``Function`` (forward/backward on raw arrays).

A Function sees only raw arrays (numpy or cupy). Calling it on Tensors records a node in a
define-by-run graph; ``Tensor.backward()`` walks that graph in reverse topological order,
iteratively (no recursion), summing gradients where a tensor feeds several ops.
"""
import contextlib

import numpy as np

from minidl import backend


class Config:
    enable_grad = True


@contextlib.contextmanager
def no_grad():
    """Within this block ops record nothing (inference, optimiser updates)."""
    old = Config.enable_grad
    Config.enable_grad = False
    try:
        yield
    finally:
        Config.enable_grad = old


@contextlib.contextmanager
def enable_grad():
    old = Config.enable_grad
    Config.enable_grad = True
    try:
        yield
    finally:
        Config.enable_grad = old


def is_grad_enabled():
    return Config.enable_grad


def _default_dtype(data):
    """float32 for Python floats, int64 for Python ints; arrays and NumPy scalars keep their dtype."""
    if isinstance(data, (np.ndarray, np.generic)) or backend._is_cupy_array(data):
        return data.dtype
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return np.float32
    if arr.dtype.kind in "iu":
        return np.int64
    return arr.dtype


class Tensor:
    """A node of the graph: ``data`` (raw array), ``grad`` (raw array or None), ``creator``."""

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__
    _grad_hooks = ()  # leaves only: called as hook(tensor) once backward has finished this leaf's .grad

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.xp_of(data)
        dtype = np.dtype(dtype) if dtype is not None else _default_dtype(data)
        data = xp.asarray(data, dtype=dtype)
        if device is not None:
            data = backend.to_device(data, device)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self.generation = 0
        self.name = None
        self._retain_grad = False

    # ---- array-like properties -------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = str(backend.as_numpy(self.data)).replace("\n", "\n       ")
        extra = f", device={self.device}" if self.device != "cpu" else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}, dtype={self.dtype}{extra}{grad})"

    def numpy(self):
        """The data as a host numpy array (copied from the GPU when needed)."""
        return backend.as_numpy(self.data)

    def item(self):
        return self.data.item()

    def to(self, device):
        """A tensor on "cpu" or "cuda"; differentiable (gradients flow back to this device)."""
        device = backend.check_device(device)
        if device == self.device:
            return self
        from minidl.functional.math import to_device
        return to_device(self, device)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def retain_grad(self):
        """Keep ``.grad`` on this intermediate tensor after backward (leaves always keep it)."""
        self._retain_grad = True
        return self

    def zero_grad(self):
        self.grad = None

    def register_grad_hook(self, hook):
        """Call ``hook(self)`` when a backward pass has added its last contribution to this leaf's
        ``.grad`` (data-parallel training starts all-reducing it then). Returns a remover."""
        if not self._grad_hooks:
            self._grad_hooks = []
        self._grad_hooks.append(hook)
        return lambda: self._grad_hooks.remove(hook)

    def astype(self, dtype):
        from minidl.functional.math import astype
        return astype(self, dtype)

    # ---- backward ---------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        grad: the gradient of some scalar w.r.t. this tensor (same shape); may be omitted
        for a one-element tensor. retain_graph: keep saved arrays so backward can run again.
        """
        xp = backend.xp_of(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a grad argument needs a one-element tensor, "
                                   f"got shape {self.shape}; pass grad= of that shape")
            grad = xp.ones_like(self.data)
        else:
            grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}, tensor has shape {self.shape}")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad())")
        if self.creator is None:
            self.grad = grad if self.grad is None else self.grad + grad
            _leaf_uses_done(self, {self: 1})
            return

        order = _topological_order(self.creator)
        uses = _hooked_leaf_uses(order)  # hooked leaf -> Functions yet to pass it a gradient
        grads = {self: grad}  # gradients of intermediate tensors, dropped once consumed
        for f in reversed(order):
            if f.freed:
                raise RuntimeError(f"backward through {f.name} a second time: its saved arrays were freed "
                                   "after the first backward; call backward(retain_graph=True) the first time")
            outs = [o() for o in f.outputs]
            gys = [grads.pop(o, None) if o is not None else None for o in outs]
            if all(g is None for g in gys):
                _leaf_uses_done(f, uses)
                if not retain_graph:  # no gradient reached it, but its saved arrays are done with too
                    f.release()
                continue
            for o, gy in zip(outs, gys):
                if o is not None and gy is not None and o._retain_grad:
                    o.grad = gy if o.grad is None else o.grad + gy
            if len(gys) > 1:  # a multi-output op gets zeros for outputs nobody used
                gys = [g if g is not None else f._zeros_like_output(i) for i, g in enumerate(gys)]
            try:
                gxs = f.backward(*gys)
            except MemoryError as e:
                err = backend.out_of_memory(f"{f.name} backward", e)
                if err is None:
                    raise
                raise err from e
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(f.inputs):
                raise RuntimeError(f"{f.name}.backward returned {len(gxs)} gradients for {len(f.inputs)} inputs")
            for i, (x, gx) in enumerate(zip(f.inputs, gxs)):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.shape:
                    raise RuntimeError(f"{f.name}.backward returned a gradient of shape {gx.shape} for input {i} "
                                       f"of shape {x.shape}")
                if gx.dtype != x.dtype:  # a float64 constant promoted the op; .grad keeps x's dtype
                    gx = gx.astype(x.dtype)
                if x.creator is None:
                    x.grad = gx if x.grad is None else x.grad + gx
                else:
                    grads[x] = gx if x not in grads else grads[x] + gx
            _leaf_uses_done(f, uses)
            if not retain_graph:
                f.release()

    # ---- operators (defined in minidl.functional.math) ----------------------------------------
    def __neg__(self):
        return _math.neg(self)

    def __add__(self, other):
        return _math.add(self, other)

    def __radd__(self, other):
        return _math.add(other, self)

    def __sub__(self, other):
        return _math.sub(self, other)

    def __rsub__(self, other):
        return _math.sub(other, self)

    def __mul__(self, other):
        return _math.mul(self, other)

    def __rmul__(self, other):
        return _math.mul(other, self)

    def __truediv__(self, other):
        return _math.div(self, other)

    def __rtruediv__(self, other):
        return _math.div(other, self)

    def __pow__(self, other):
        return _math.pow(self, other)

    def __rpow__(self, other):
        return _math.pow(other, self)

    def __matmul__(self, other):
        return _math.matmul(self, other)

    def __rmatmul__(self, other):
        return _math.matmul(other, self)

    def __getitem__(self, index):
        return _shape.getitem(self, index)

    def exp(self):
        return _math.exp(self)

    def log(self):
        return _math.log(self)

    def sqrt(self):
        return _math.sqrt(self)

    def sum(self, axis=None, keepdims=False):
        return _math.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _math.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _math.max(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _shape.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _shape.transpose(self, axes or None)

    @property
    def T(self):
        return _shape.transpose(self, None)

    def broadcast_to(self, shape):
        return _shape.broadcast_to(self, shape)

    def relu(self):
        from minidl.functional.activation import relu
        return relu(self)

    # Comparisons give plain boolean arrays (no gradient), handy for metrics and masks.
    def __gt__(self, other):
        return self.data > _raw(other)

    def __lt__(self, other):
        return self.data < _raw(other)

    def __ge__(self, other):
        return self.data >= _raw(other)

    def __le__(self, other):
        return self.data <= _raw(other)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _topological_order(root):
    """Functions reachable from ``root``, each listed after the Functions that made its inputs.

    Iterative post-order DFS, so ``reversed(order)`` visits every Function after all Functions
    that use its outputs. No recursion: a 100,000-op chain is fine.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        f, done = stack.pop()
        if done:
            order.append(f)
            continue
        if f in visited:
            continue
        visited.add(f)
        stack.append((f, True))
        for x in f.inputs or ():
            c = x.creator
            if c is not None and c not in visited:
                stack.append((c, False))
    return order


def _hooked_leaf_uses(order):
    """How many Functions of ``order`` take each leaf that has grad hooks (counted down in backward)."""
    uses = {}
    for f in order:
        for x in f.inputs or ():
            if x._grad_hooks and x.creator is None:
                uses[x] = uses.get(x, 0) + 1
    return uses


def _leaf_uses_done(f, uses):
    """``f`` (a Function, or the leaf itself) has passed its gradients: run hooks of finished leaves."""
    if not uses:
        return
    for x in (f.inputs or ()) if isinstance(f, Function) else (f,):
        if x in uses:
            uses[x] -= 1
            if uses[x] == 0:
                for hook in list(x._grad_hooks):
                    hook(x)


def as_tensor(x, like=None):
    """Wrap a constant (scalar, array) as a Tensor; Python scalars take ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp = backend.xp_of(like.data)
        if np.isscalar(x) or isinstance(x, np.ndarray) and x.ndim == 0:
            dtype = like.dtype if like.dtype.kind == "f" or isinstance(x, (int, np.integer)) else None
            return Tensor(xp.asarray(x, dtype=dtype))
        if isinstance(x, (list, tuple)):
            return Tensor(xp.asarray(x, dtype=like.dtype if like.dtype.kind == "f" else None))
    return Tensor(x)


class Function:
    """One differentiable op. Subclasses write ``forward(*arrays)`` and ``backward(*grads)``.

    ``forward`` receives raw arrays and returns an array (or a tuple of them), keeping on
    ``self`` whatever ``backward`` needs. ``backward`` receives one gradient per output and
    returns one gradient per input (``None`` for an input that needs none). Attributes set on
    the instance are freed after backward has run (unless ``retain_graph=True``).
    """

    inputs = None
    outputs = ()
    generation = 0
    freed = False

    @property
    def name(self):
        return type(self).__name__

    def __call__(self, *inputs):
        ref = next((x for x in inputs if isinstance(x, Tensor)), None)
        xs = [as_tensor(x, ref) for x in inputs]
        _check_same_device(self.name, xs)
        arrays = [x.data for x in xs]
        needs_grad = Config.enable_grad and any(x.requires_grad for x in xs)
        self.needs_input_grad = tuple(x.requires_grad for x in xs) if needs_grad else (False,) * len(xs)
        try:
            ys = self.forward(*arrays)
        except MemoryError as e:  # name the op and the size (CuPy's own message names neither op nor layer)
            err = backend.out_of_memory(f"{self.name} forward", e)
            if err is None:
                raise
            raise err from e
        if not isinstance(ys, tuple):
            ys = (ys,)
        outputs = [Tensor(y) for y in ys]
        if needs_grad:
            import weakref
            self.inputs = xs
            self.generation = max(x.generation for x in xs)
            self._output_meta = [(y.shape, y.dtype) for y in ys]
            for o in outputs:
                o.creator = self
                o.requires_grad = True
                o.generation = self.generation + 1
            self.outputs = [weakref.ref(o) for o in outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def _zeros_like_output(self, i):
        shape, dtype = self._output_meta[i]
        xp = backend.xp_of(*[x.data for x in self.inputs])
        return xp.zeros(shape, dtype=dtype)

    def release(self):
        """Drop saved arrays and the links to inputs once backward has used them."""
        self.__dict__.clear()
        self.freed = True


def _check_same_device(op, tensors):
    devices = {x.device for x in tensors}
    if len(devices) > 1:
        where = ", ".join(f"input {i} on {x.device}" for i, x in enumerate(tensors))
        raise RuntimeError(f"{op}: inputs are on different devices ({where}); move them with .to(device) first")


def tensor(data, requires_grad=False, dtype=None, device=None):
    """Make a Tensor from a list, scalar or array. Python floats become float32.

    Like ``torch.tensor`` it copies: changing the tensor in place (an optimiser step) never
    changes the caller's array. (``Tensor(array)`` itself wraps without copying.)
    """
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or backend._is_cupy_array(data):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


# Imported last: these modules define Functions on top of the classes above.
from minidl.functional import math as _math  # noqa: E402
from minidl.functional import shape as _shape  # noqa: E402
