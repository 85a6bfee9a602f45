"""The autograd core: ``Tensor``, ``Node``, ``Function``, the backward walk and ``no_grad``.

The design (a graph of data-free Nodes, Functions keeping only what backward reads, the iterative
reverse-topological walk, freeing after use) is described in ARCHITECTURE.md, "The one idea".
"""
import weakref

import numpy as np

from minidl import backend


class Config:
    enable_grad = True


class no_grad:
    """``with no_grad():`` ops record nothing in the block (inference, optimiser updates)."""

    enabled = False

    def __enter__(self):
        self.old, Config.enable_grad = Config.enable_grad, self.enabled

    def __exit__(self, *exc):
        Config.enable_grad = self.old


class enable_grad(no_grad):
    """``with enable_grad():`` ops record again (inside a no_grad block)."""

    enabled = True


def is_grad_enabled():
    return Config.enable_grad


class Node:
    """A tensor's place in the graph, no data: creator Function (None: leaf), shape, dtype, weakref to the Tensor."""

    __slots__ = ("creator", "shape", "dtype", "tensor", "__weakref__")

    def __init__(self, tensor, creator=None):
        self.creator, self.shape, self.dtype = creator, tensor.data.shape, tensor.data.dtype
        self.tensor = weakref.ref(tensor)


def _default_dtype(data):
    """float32 for Python floats, int64 for Python ints; arrays and NumPy scalars keep their dtype."""
    if isinstance(data, (np.ndarray, np.generic)) or backend._is_cupy_array(data):
        return data.dtype
    dt = np.asarray(data).dtype
    return np.float32 if dt.kind == "f" else np.int64 if dt.kind in "iu" else dt


class Tensor:
    """``data`` (raw array), ``grad`` (raw array or None), ``node`` (its place in the graph)."""

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__
    _grad_hooks = ()  # leaves only: called as hook(tensor) once backward has finished this leaf's .grad

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        data = _raw(data)
        data = backend.xp_of(data).asarray(data, dtype=np.dtype(dtype) if dtype is not None else _default_dtype(data))
        if device is not None:
            data = backend.to_device(data, device)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data, self.grad, self.requires_grad = data, None, bool(requires_grad)
        self.node = Node(self)
        self._retain_grad = False

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: backend.device_of(self.data))
    creator = property(lambda self: self.node.creator, doc="The Function that made this tensor, None for a leaf.")
    is_leaf = property(lambda self: self.node.creator is None)

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
        """Run ``hook(self)`` once a backward has added its last part to this leaf's ``.grad``; returns a remover."""
        if not self._grad_hooks:
            self._grad_hooks = []
        self._grad_hooks.append(hook)
        return lambda: self._grad_hooks.remove(hook)

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``; ``grad`` has self's shape (omitted: a
        one-element self, gradient 1); ``retain_graph`` keeps the saved arrays for another backward."""
        grad = _initial_grad(self, grad)
        order = _topological_order(self.creator)
        uses = _hooked_leaf_uses(order)  # hooked leaf Node -> Functions yet to pass it a gradient
        grads = {self.node: grad}  # Node -> gradient so far; an intermediate's is dropped once consumed
        for f in reversed(order):
            if f.freed:
                raise RuntimeError(f"backward through {f.name} a second time: its saved arrays were freed "
                                   "after the first backward; call backward(retain_graph=True) the first time")
            outs = [ref() for ref in f.outputs]
            gys = [grads.pop(o, None) if o is not None else None for o in outs]
            if any(g is not None for g in gys):
                for o, gy in zip(outs, gys):  # intermediates asked to keep their .grad
                    t = o.tensor() if o is not None and gy is not None else None
                    if t is not None and t._retain_grad:
                        t.grad = gy if t.grad is None else t.grad + gy
                gxs = _run(f, "backward", f.backward, *_zeros_for_unused(f, gys))
                for node, gx in _checked_grads(f, gxs):
                    grads[node] = gx if node not in grads else grads[node] + gx
            for node in _last_uses(f, uses):
                _finish_leaf(node, grads)
            if not retain_graph:  # also when no gradient reached f: its saved arrays are done with too
                f.release()
        for node in list(grads):  # what is left are leaves
            _finish_leaf(node, grads)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


# ---- the helpers of backward ----------------------------------------------------------------------
def _initial_grad(t, grad):
    """The gradient backward starts from: ``grad`` checked against ``t``, or 1 for a one-element ``t``."""
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(f"backward() without a grad argument needs a one-element tensor, "
                               f"got shape {t.shape}; pass grad= of that shape")
        grad = backend.xp_of(t.data).ones_like(t.data)
    else:
        grad = backend.xp_of(t.data).asarray(_raw(grad), dtype=t.dtype)
        if grad.shape != t.shape:
            raise ValueError(f"backward: grad has shape {grad.shape}, tensor has shape {t.shape}")
    if not t.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad "
                           "(no input had requires_grad=True, or it was made under no_grad())")
    return grad


def _finish_leaf(node, grads):
    """A leaf has received all its gradient: add it to ``.grad``, then run the leaf's hooks."""
    t, g = node.tensor(), grads.pop(node, None)
    if t is None:  # a leaf dropped by its owner: nobody can read its gradient
        return
    if g is not None:
        t.grad = g if t.grad is None else t.grad + g
    for hook in list(t._grad_hooks):
        hook(t)


def _topological_order(root):
    """Functions reachable from ``root``, each after those that made its inputs (iterative post-order DFS)."""
    order, visited, stack = [], set(), [(root, False)] if root is not None else []
    while stack:
        f, done = stack.pop()
        if done:
            order.append(f)
        elif f not in visited:
            visited.add(f)
            stack.append((f, True))
            stack.extend((n.creator, False) for n in f.inputs if n.creator is not None and n.creator not in visited)
    return order


def _zeros_for_unused(f, gys):
    """A multi-output op gets zeros for the outputs nobody used."""
    if len(gys) == 1:
        return gys
    xp = backend.xp_of(next(g for g in gys if g is not None))
    return [g if g is not None else xp.zeros(*f.output_meta[i]) for i, g in enumerate(gys)]


def _checked_grads(f, gxs):
    """(input Node, gradient) for each input of ``f`` that needs one: count and shapes checked, cast to
    the input's dtype (a float64 constant may have promoted the op)."""
    gxs = gxs if isinstance(gxs, tuple) else (gxs,)
    if len(gxs) != len(f.inputs):
        raise RuntimeError(f"{f.name}.backward returned {len(gxs)} gradients for {len(f.inputs)} inputs")
    for i, (node, needed, gx) in enumerate(zip(f.inputs, f.needs_input_grad, gxs)):
        if gx is None or not needed:
            continue
        x = node.tensor() if node.creator is None else node  # a leaf's data may have been replaced since
        if x is None:
            continue
        if gx.shape != x.shape:
            raise RuntimeError(f"{f.name}.backward returned a gradient of shape {gx.shape} for input {i} "
                               f"of shape {x.shape}")
        yield node, gx if gx.dtype == x.dtype else gx.astype(x.dtype)


def _hooked_leaf_uses(order):
    """How many Functions of ``order`` take each leaf that has grad hooks (its hooks run at 0)."""
    uses = {}
    for f in order:
        for n in f.inputs:
            if n.creator is None and getattr(n.tensor(), "_grad_hooks", None):
                uses[n] = uses.get(n, 0) + 1
    return uses


def _last_uses(f, uses):
    """The hooked leaves whose last Function was ``f`` (counting their uses down)."""
    done = []
    for n in f.inputs if uses else ():
        if n in uses:
            uses[n] -= 1
            if uses[n] == 0:
                done.append(n)
    return done


def _run(f, what, method, *arrays):
    """``method(*arrays)``; an out-of-memory error becomes one naming the op and the size (CuPy's names neither)."""
    try:
        return method(*arrays)
    except MemoryError as e:
        err = backend.out_of_memory(f"{f.name} {what}", e)
        if err is None:
            raise
        raise err from e


# ---- Function -------------------------------------------------------------------------------------
def as_tensor(x, like=None):
    """Wrap a constant (scalar, array) as a Tensor; Python scalars take ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp, floating = backend.xp_of(like.data), like.dtype.kind == "f"
        if np.isscalar(x) or isinstance(x, np.ndarray) and x.ndim == 0:
            return Tensor(xp.asarray(x, dtype=like.dtype if floating or isinstance(x, (int, np.integer)) else None))
        if isinstance(x, (list, tuple)):
            return Tensor(xp.asarray(x, dtype=like.dtype if floating else None))
    return Tensor(x)


class Function:
    """One differentiable op: subclasses write ``forward(*arrays)`` -> array(s), saving on ``self`` only
    what backward reads (``self.needs_input_grad``), and ``backward(*grads)`` -> one gradient per
    input (None where not needed). ``self`` is cleared after backward unless ``retain_graph=True``."""

    inputs = ()   # the inputs' Nodes (no data), set when a call is recorded
    outputs = ()  # weak references to the outputs' Nodes
    freed = False

    @property
    def name(self):
        return type(self).__name__

    def __call__(self, *inputs):
        ref = next((x for x in inputs if isinstance(x, Tensor)), None)
        xs = [as_tensor(x, ref) for x in inputs]
        if len({x.device for x in xs}) > 1:
            where = ", ".join(f"input {i} on {x.device}" for i, x in enumerate(xs))
            raise RuntimeError(f"{self.name}: inputs are on different devices ({where}); move them with .to(device) first")
        record = Config.enable_grad and any(x.requires_grad for x in xs)
        self.needs_input_grad = tuple(record and x.requires_grad for x in xs)
        ys = _run(self, "forward", self.forward, *[x.data for x in xs])
        outputs = [Tensor(y) for y in (ys if isinstance(ys, tuple) else (ys,))]
        if record:
            self.inputs = tuple(x.node for x in xs)
            self.output_meta = [(y.shape, y.dtype) for y in outputs]
            for y in outputs:
                y.node, y.requires_grad = Node(y, self), True
            self.outputs = tuple(weakref.ref(y.node) for y in outputs)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def release(self):
        """Drop the saved arrays and the links to the inputs once backward has used them."""
        self.__dict__.clear()
        self.freed = True


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A Tensor from a list, scalar or array (Python floats: float32), copied like ``torch.tensor`` so an
    in-place change never reaches the caller's array (``Tensor(array)`` wraps without copying)."""
    data = _raw(data)
    if isinstance(data, np.ndarray) or backend._is_cupy_array(data):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


# ---- the one seam with minidl.functional ----------------------------------------------------------
# Tensor's operators and methods (+, @, [], .sum(), .to(), ...) are ops of minidl.functional, added
# to Tensor in one table there; imported last because they are Functions of the classes above.
from minidl.functional import operators as _operators  # noqa: E402,F401
