"""Differentiable ops, grouped by family. Each is a Function with forward and backward side by side."""
from minidl.functional.math import (add, sub, mul, div, neg, pow, exp, log, sqrt, matmul,  # noqa: F401
                                    sum, mean, max, sum_to)
from minidl.functional.shape import reshape, transpose, getitem, broadcast_to, concat, flatten  # noqa: F401
from minidl.functional.activation import relu, tanh, sigmoid, softmax, log_softmax  # noqa: F401
from minidl.functional.linear import linear  # noqa: F401
from minidl.functional.conv import conv2d  # noqa: F401
from minidl.functional.dropout import dropout  # noqa: F401
from minidl.functional.loss import cross_entropy  # noqa: F401
from minidl.functional.pool import max_pool2d, avg_pool2d, adaptive_avg_pool2d  # noqa: F401
from minidl.functional.norm import local_response_norm, batch_norm  # noqa: F401
