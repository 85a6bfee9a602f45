"""What the graph keeps alive: only the arrays backward reads (issue 15, "saved arrays, explicitly").

Deterministic counts, not timings: weak references to arrays, and a tracker of the live bytes of
the arrays the graph makes.
"""
import gc
import weakref

import numpy as np
import pytest

import minidl as md
from minidl import functional as F, nn, optim
from minidl.autograd import Function


def _owner(a):
    """The array that owns ``a``'s memory (a view counts as its base)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class LiveArrays:
    """The live bytes of the arrays the graph makes, and their peak.

    Counted: what every Function's forward returns, the arrays it saves on itself, and the
    gradients its backward returns (which become the parameters' ``.grad``). Each is counted once,
    by the array owning its memory, from when a Function hands it over until that memory is freed
    (a ``weakref.finalize`` on the owner). Arrays made before (the parameters, the input batch) are
    never counted; temporaries inside one forward or backward are not seen.
    """

    def __init__(self, monkeypatch, before=()):
        self.live, self.now, self.peak = {}, 0, 0
        self.before = {id(_owner(a)) for a in before}
        for cls in _subclasses(Function):
            for method in ("forward", "backward"):
                if method in vars(cls):
                    monkeypatch.setattr(cls, method, self._wrap(vars(cls)[method]))

    def _wrap(self, method):
        def tracked(f, *arrays):
            out = method(f, *arrays)
            self.add(*(out if isinstance(out, tuple) else (out,)))
            self.add(*_saved(f))
            return out
        return tracked

    def add(self, *arrays):
        for a in arrays:
            if not isinstance(a, np.ndarray):
                continue
            o = _owner(a)
            if id(o) in self.live or id(o) in self.before:
                continue
            self.live[id(o)] = o.nbytes
            self.now += o.nbytes
            self.peak = max(self.peak, self.now)
            weakref.finalize(o, self._freed, id(o))

    def _freed(self, key):
        self.now -= self.live.pop(key)


def _subclasses(cls):
    for c in cls.__subclasses__():
        yield c
        yield from _subclasses(c)


def _saved(f):
    """The arrays a Function holds on itself (directly or in a tuple/list)."""
    for v in vars(f).values():
        for a in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(a, np.ndarray):
                yield a


def _saved_bytes(functions, exclude):
    owners = {id(_owner(a)): _owner(a).nbytes for f in functions for a in _saved(f)}
    return sum(n for k, n in owners.items() if k not in {id(_owner(a)) for a in exclude})


def _graph(t):
    """Every Function of the graph that made ``t``."""
    seen, stack = set(), [t.creator]
    while stack:
        f = stack.pop()
        if f is not None and f not in seen:
            seen.add(f)
            stack.extend(n.creator for n in f.inputs)
    return seen


def _leaf(rng, *shape):
    return md.tensor(rng.standard_normal(shape) * 0.3, requires_grad=True)


# ---- the pre-ReLU arrays -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pre_relu_arrays_are_freed_once_the_forward_moves_on(dtype):
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((2, 3, 9, 9)), dtype=dtype)
    w1, w2 = (md.tensor(rng.standard_normal(s) * 0.3, dtype=dtype, requires_grad=True)
              for s in ((4, 3, 3, 3), (5, 4, 3, 3)))
    gc.disable()  # reference counting alone must free them (no cycle left for the collector)
    try:
        pre = []

        def forward(keep):
            h = x
            for w in (w1, w2):
                z = F.conv2d(h, w, padding=1)
                pre.append(z if keep else weakref.ref(z.data))
                h = F.relu(z)
            return (h * h).sum()

        loss = forward(keep=False)
        assert all(r() is None for r in pre), "a pre-ReLU conv output is still referenced after the forward"
        loss.backward()
        grads = [w1.grad.copy(), w2.grad.copy()]
        w1.grad = w2.grad = None
        forward(keep=True).backward()  # the same step with the pre-ReLU outputs held: same gradients
        np.testing.assert_array_equal(grads[0], w1.grad)
        np.testing.assert_array_equal(grads[1], w2.grad)
    finally:
        gc.enable()


def test_an_op_keeps_only_the_operands_its_backward_reads():
    # x * constant: d/dx reads only the constant; a frozen linear layer: d/dx reads only the weight
    rng = np.random.default_rng(1)
    a = _leaf(rng, 4, 5)
    frozen = md.tensor(rng.standard_normal((2, 5)))
    h = a * 2.0
    y = h * 3.0
    z = F.linear(y, frozen)
    refs = [weakref.ref(h.data), weakref.ref(y.data)]
    del h, y
    assert all(r() is None for r in refs), "an operand no gradient reads is still referenced"
    z.sum().backward()
    np.testing.assert_allclose(a.grad, np.broadcast_to(6.0 * frozen.data.sum(axis=0), (4, 5)), rtol=1e-12)


# ---- a training step's peak ----------------------------------------------------------------------

def _small_vgg():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def _what_backward_needs(net, x, classes):
    """Bytes backward must read, from the layer shapes alone: each conv's input (for its weight
    gradient; not the first conv's, that is the batch), one byte per element for each ReLU's mask,
    at most 4 per output element for each max-pool's switches, the linear layer's input, and the
    loss's log-probabilities and int64 targets. Also the largest activation (bytes)."""
    need, largest, h = 0, 0, x
    with md.no_grad():
        for m in net:
            y = m(h)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and h is not x:
                need += h.data.nbytes
            elif isinstance(m, nn.ReLU):
                need += h.size
            elif isinstance(m, nn.MaxPool2d):
                need += 4 * y.size
            largest = max(largest, y.data.nbytes)
            h = y
    return need + x.shape[0] * (classes * x.dtype.itemsize + 8), largest


def test_training_step_peak_is_within_a_stated_bound_of_what_backward_needs(monkeypatch):
    """Peak live bytes of the step <= N + G + 2 A, where N is what backward needs (above), G the
    parameters' bytes (their gradients are live at the end) and A the largest activation: during
    the forward, the saved arrays plus one op's input and output that nothing saves (a conv
    output while its ReLU runs); during backward, the saved arrays not yet used, the gradients of
    the parameters so far, and one op's incoming and outgoing gradients. A graph that kept every
    op's inputs would hold every pre-ReLU conv output as well: here 4.5 A more at the end of the
    forward, more than the 2 A + G of slack."""
    md.manual_seed(0)
    net = _small_vgg()
    params = list(net.parameters())
    opt = optim.SGD(params, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    t = rng.integers(0, 10, size=8)
    need, largest = _what_backward_needs(net, x, 10)
    grads_bytes = sum(p.data.nbytes for p in params)
    assert 4 * largest > 2 * largest + grads_bytes  # the net is big enough for the bound to tell

    live = LiveArrays(monkeypatch, before=[x.data, t] + [p.data for p in params])
    loss = F.cross_entropy(net(x), t)
    saved = _saved_bytes(_graph(loss), exclude=[x.data] + [p.data for p in params])
    assert saved <= need, f"the graph saves {saved} bytes, backward needs {need}"
    # after the forward, nothing but the saved arrays (and the loss) is alive
    assert live.now - loss.data.nbytes <= need, (live.now, need)
    loss.backward()
    opt.step()
    bound = need + grads_bytes + 2 * largest
    assert live.peak <= bound, f"peak {live.peak} bytes > bound {bound} (need {need}, grads {grads_bytes}, " \
                               f"largest activation {largest})"
    del loss
    opt.zero_grad()
    assert live.now == 0  # every array the step made is gone with the gradients


# ---- retain_graph and the second backward still behave ------------------------------------------

def test_retain_graph_allows_a_second_backward_through_conv_relu_and_saved_outputs():
    rng = np.random.default_rng(2)
    x = _leaf(rng, 2, 3, 6, 6)
    w = _leaf(rng, 4, 3, 3, 3)
    loss = F.tanh(F.sigmoid(F.relu(F.conv2d(x, w, padding=1)))).sum()  # Sigmoid and Tanh save their outputs
    loss.backward(retain_graph=True)
    first = x.grad.copy(), w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(w.grad, 2 * first[1], rtol=1e-12)
    with pytest.raises(RuntimeError, match="a second time.*retain_graph=True"):
        loss.backward()


def test_backward_twice_without_retain_graph_is_a_clear_error():
    rng = np.random.default_rng(3)
    x = _leaf(rng, 2, 3, 5, 5)
    h = F.relu(F.conv2d(x, _leaf(rng, 2, 3, 3, 3)))
    loss = (h * h).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"backward through \w+ a second time"):
        loss.backward()
    # a new graph over a part already freed reaches the freed op: the same error, not a crash
    with pytest.raises(RuntimeError, match="a second time"):
        (h * 2.0).sum().backward()
