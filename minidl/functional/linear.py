"""Fully-connected layer: y = x W^T + b (one GEMM forward, two backward)."""
from minidl.autograd import Function


class Linear(Function):
    """x (N, in) · weight (out, in)^T + bias (out,) -> (N, out)."""

    def forward(self, x, w, b=None):
        if x.ndim < 2 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
            raise ValueError(f"linear: input {x.shape} does not match weight {w.shape} "
                             f"(expected input (..., {w.shape[1] if w.ndim == 2 else '?'}))")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias has shape {b.shape}, expected ({w.shape[0]},)")
        # x only for the weight's gradient, w only for the input's (a frozen layer keeps no x)
        self.x, self.w = (x if self.needs_input_grad[1] else None), (w if self.needs_input_grad[0] else None)
        y = x @ w.T
        return y + b if b is not None else y

    def backward(self, gy):
        x, w = self.x, self.w
        gx = gy @ w if self.needs_input_grad[0] else None
        gw = gb = None
        if self.needs_input_grad[1]:
            gw = gy.reshape(-1, gy.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.reshape(-1, gy.shape[-1]).sum(axis=0)
        return (gx, gw, gb) if len(self.needs_input_grad) > 2 else (gx, gw)


def linear(x, weight, bias=None):
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)
