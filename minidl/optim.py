"""Optimisers and learning-rate schedules.

AlexNet's recipe: SGD, momentum 0.9, weight decay 5e-4, learning rate divided by 10 whenever
the validation error stopped improving (``ReduceLROnPlateau``); ResNet used ``StepLR``-like drops.
"""
import math

from minidl import backend, kernels


class Optimizer:
    HYPERPARAMETERS = ("lr",)   # saved by state_dict and restored by load_state_dict

    def __init__(self, params, lr):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr
        self.state = {}  # id(param) -> dict of arrays

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _state(self, p):
        st = self.state.setdefault(id(p), {})
        for k, v in st.items():  # follow the parameter when the model moved device
            if backend.device_of(v) != p.device:
                st[k] = backend.to_device(v, p.device)
        return st

    def state_dict(self):
        """The hyperparameters and host copies of the optimiser's state, keyed by parameter position."""
        index = {id(p): i for i, p in enumerate(self.params)}
        sd = {name: getattr(self, name) for name in self.HYPERPARAMETERS}
        sd["state"] = {index[k]: {n: _host_copy(a) for n, a in v.items()} for k, v in self.state.items() if k in index}
        return sd

    def load_state_dict(self, sd):
        """Restore what state_dict saved; hyperparameters missing from an older dict keep their values."""
        for name in self.HYPERPARAMETERS:
            if name in sd:
                setattr(self, name, sd[name])
        self.state = {}
        for i, st in sd["state"].items():
            p = self.params[int(i)]
            self.state[id(p)] = {n: backend.to_device(a, p.device).copy() for n, a in st.items()}


def _host_copy(a):
    """A numpy copy of a state array (as_numpy alone returns a CPU array itself, which step() updates)."""
    return backend.as_numpy(a) if backend.device_of(a) != "cpu" else a.copy()


class SGD(Optimizer):
    """SGD with momentum (PyTorch's form: v = mu v + g; p -= lr v), optional Nesterov, L2 weight decay.

    Updates parameters in place on their own device.
    """
    HYPERPARAMETERS = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def step(self):
        # minidl/kernels/sgd.py: d = g + weight_decay * p; v = momentum * v + d (v = d on the first
        # step); p -= lr * (d + momentum * v if nesterov else v). One fused pass per parameter
        # (Numba on the CPU, CUDA on the GPU).
        for p in self.params:
            if p.grad is None:
                continue
            st = self._state(p) if self.momentum else None
            v = kernels.of(p.data).sgd_update(p.data, p.grad, st.get("momentum") if st is not None else None,
                                              self.lr, self.momentum, self.weight_decay, self.nesterov)
            if st is not None:
                st["momentum"] = v


class _Schedule:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, sd):
        self.__dict__.update(sd)


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (epoch // step_size); call ``step()`` once per epoch."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def step(self, metric=None):
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)


class ReduceLROnPlateau(_Schedule):
    """Divide lr by 1/factor when the monitored value (validation error) has not improved for
    ``patience`` epochs — how AlexNet's rate went from 0.01 down three times."""

    def __init__(self, optimizer, factor=0.1, patience=2, threshold=1e-4, min_lr=0.0):
        super().__init__(optimizer)
        self.factor, self.patience, self.threshold, self.min_lr = factor, patience, threshold, min_lr
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric):
        self.epoch += 1
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.bad_epochs = 0


class WarmupLR(_Schedule):
    """Linear warm-up from ``start_factor * lr`` to lr over ``warmup_steps`` calls of ``step()``
    (Goyal et al. 2017); after that lr is left to the other schedules."""

    def __init__(self, optimizer, warmup_steps, start_factor=0.1):
        super().__init__(optimizer)
        self.warmup_steps, self.start_factor = warmup_steps, start_factor
        self.steps = 0
        if warmup_steps > 0:
            optimizer.lr = self.base_lr * start_factor

    def step(self, metric=None):
        self.steps += 1
        if self.steps <= self.warmup_steps:
            t = self.steps / self.warmup_steps
            self.optimizer.lr = self.base_lr * (self.start_factor + (1 - self.start_factor) * t)
