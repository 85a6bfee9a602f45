"""The autograd grad-ready hooks data parallelism builds on (no MPI needed)."""
import numpy as np

import minidl as md
from minidl import nn


def test_hook_fires_once_after_the_last_contribution():
    w = nn.Parameter(np.ones((3, 3)))
    unused = nn.Parameter(np.ones(2))
    seen = []
    w.register_grad_hook(lambda p: seen.append(p.grad.copy()))
    unused.register_grad_hook(lambda p: seen.append("unused"))
    x = md.tensor(np.arange(6.0).reshape(2, 3))
    ((x @ w) @ w).sum().backward()          # w feeds two matmuls: one hook call, with the full gradient
    assert len(seen) == 1 and np.array_equal(seen[0], w.grad)


def test_hook_order_follows_backward_and_remover_works():
    a, b = nn.Parameter(np.ones((4, 4))), nn.Parameter(np.ones((4, 4)))
    order = []
    remove_a = a.register_grad_hook(lambda p: order.append("a"))
    b.register_grad_hook(lambda p: order.append("b"))
    x = md.tensor(np.ones((1, 4)))
    ((x @ a) @ b).sum().backward()          # b is used last in forward, so its gradient is ready first
    assert order == ["b", "a"]
    remove_a()
    order.clear()
    ((x @ a) @ b).sum().backward()
    assert order == ["b"]


def test_hook_on_leaf_backward():
    w = nn.Parameter(np.ones(3))
    calls = []
    w.register_grad_hook(lambda p: calls.append(1))
    w.backward(np.ones(3))
    assert calls == [1]
