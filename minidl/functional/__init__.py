"""Differentiable ops, grouped by family. Each is a Function with forward and backward side by side."""
from minidl.functional.math import (add, sub, mul, div, neg, pow, exp, log, sqrt, matmul,  # noqa: F401
                                    sum, mean, max, sum_to)
from minidl.functional.shape import reshape, transpose, getitem, broadcast_to, concat, flatten  # noqa: F401
from minidl.functional.activation import relu, tanh, sigmoid, softmax, log_softmax  # noqa: F401
from minidl.functional.linear import linear  # noqa: F401
from minidl.functional.dropout import dropout  # noqa: F401
from minidl.functional.loss import cross_entropy  # noqa: F401
