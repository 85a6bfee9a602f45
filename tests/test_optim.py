"""SGD against torch.optim.SGD, learning-rate schedules, optimiser state round trips."""
import numpy as np
import pytest

import minidl as md
from minidl import optim


def quadratic_problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)


def loss_md(w, b, x):
    return ((x @ w + b) ** 2).mean() + (w * w).sum() * 0.01


CONFIGS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(weight_decay=0.05),
           dict(momentum=0.5, weight_decay=0.01), dict(momentum=0.9, weight_decay=5e-4, nesterov=True)]


@pytest.mark.parametrize("kw", CONFIGS, ids=[str(k) for k in CONFIGS])
def test_sgd_matches_torch(kw):
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    x, w0, b0 = quadratic_problem()
    w, b = md.tensor(w0, requires_grad=True), md.tensor(b0, requires_grad=True)
    opt = optim.SGD([w, b], lr=0.1, **kw)
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    topt = torch.optim.SGD([tw, tb], lr=0.1, **kw)
    tx = torch.tensor(x)
    for step in range(5):
        opt.zero_grad()
        loss_md(w, b, md.tensor(x)).backward()
        opt.step()
        topt.zero_grad()
        (((tx @ tw + tb) ** 2).mean() + (tw * tw).sum() * 0.01).backward()
        topt.step()
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}")
        np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}")


def test_sgd_plain_formula_and_in_place_float32():
    p = md.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    data = p.data
    p.grad = np.array([0.5, -1.0], np.float32)
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, 2.1])
    assert p.data is data and p.data.dtype == np.float32  # updated in place, dtype kept


def test_sgd_skips_params_without_grad_and_validates():
    p = md.tensor([1.0], requires_grad=True)
    optim.SGD([p], lr=0.1, momentum=0.9).step()
    np.testing.assert_array_equal(p.data, [1.0])
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)


def test_sgd_state_dict_round_trip_continues_identically():
    x, w0, b0 = quadratic_problem()

    def run(steps, resume_after=None):
        w, b = md.tensor(w0, requires_grad=True), md.tensor(b0, requires_grad=True)
        opt = optim.SGD([w, b], lr=0.05, momentum=0.9, nesterov=True)
        for i in range(steps):
            if i == resume_after:
                sd = opt.state_dict()
                assert set(sd["state"]) == {0, 1} and isinstance(sd["state"][0]["momentum"], np.ndarray)
                opt = optim.SGD([w, b], lr=1.0, momentum=0.9, nesterov=True)
                opt.load_state_dict(sd)
                assert opt.lr == 0.05
                sd["state"][0]["momentum"][...] = 0.0  # the loaded state is a copy
            opt.zero_grad()
            loss_md(w, b, md.tensor(x)).backward()
            opt.step()
        return w.data.copy()

    np.testing.assert_array_equal(run(6), run(6, resume_after=3))
    assert not np.array_equal(run(6), run(5))


def test_step_lr_matches_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    p = md.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    sched = optim.StepLR(opt, step_size=3, gamma=0.5)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    for _ in range(10):
        sched.step()
        topt.step()
        tsched.step()
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
    assert opt.lr == pytest.approx(0.1 * 0.5 ** 3)


def test_reduce_lr_on_plateau_matches_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install -e '.[reference]'")
    metrics = [1.0, 0.9, 0.9, 0.95, 0.91, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.7, 0.7, 0.7, 0.7, 0.7]
    p = md.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, factor=0.1, patience=2)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", factor=0.1, patience=2)
    lrs = []
    for m in metrics:
        sched.step(m)
        topt.step()
        tsched.step(m)
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12), f"after metric {m}"
        lrs.append(opt.lr)
    assert min(lrs) < 0.01 * 0.1 * 0.5  # it did reduce at least twice


def test_reduce_lr_on_plateau_min_lr():
    p = md.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, factor=0.1, patience=0, min_lr=5e-4)
    for _ in range(5):
        sched.step(1.0)
    assert opt.lr == 5e-4


def test_schedule_state_dict_round_trip():
    p = md.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, patience=1)
    for m in (1.0, 0.5, 0.6):
        sched.step(m)
    sd = sched.state_dict()
    assert "optimizer" not in sd
    opt2 = optim.SGD([p], lr=0.01)
    sched2 = optim.ReduceLROnPlateau(opt2, patience=1)
    sched2.load_state_dict(sd)
    assert sched2.optimizer is opt2 and sched2.best == 0.5 and sched2.bad_epochs == 1
    sched2.step(0.7)
    assert opt2.lr == pytest.approx(0.001)


def test_warmup_lr():
    p = md.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.4)
    sched = optim.WarmupLR(opt, warmup_steps=4, start_factor=0.25)
    lrs = [opt.lr]
    for _ in range(6):
        sched.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [0.1, 0.175, 0.25, 0.325, 0.4, 0.4, 0.4])


def test_sgd_state_dict_is_a_snapshot_not_the_live_state():
    # its docstring promises host copies: a state dict kept aside (the best epoch's) must not change
    # when training goes on (on the CPU it returned the very momentum arrays that step() updates)
    w = md.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(2):
        w.grad = np.ones(3, np.float32)
        opt.step()
        if _ == 0:
            sd = opt.state_dict()
            kept = sd["state"][0]["momentum"].copy()
    np.testing.assert_array_equal(sd["state"][0]["momentum"], kept)


def test_sgd_state_dict_stores_and_restores_the_hyperparameters():
    p = md.tensor(np.ones(3), requires_grad=True)
    sd = optim.SGD([p], lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True).state_dict()
    assert (sd["lr"], sd["momentum"], sd["weight_decay"], sd["nesterov"]) == (0.05, 0.8, 1e-3, True)
    opt = optim.SGD([p], lr=1.0)
    opt.load_state_dict(sd)
    assert (opt.lr, opt.momentum, opt.weight_decay, opt.nesterov) == (0.05, 0.8, 1e-3, True)
    old = {"lr": 0.2, "state": {}}          # a dict from before the hyperparameters were saved
    opt.load_state_dict(old)
    assert (opt.lr, opt.momentum, opt.nesterov) == (0.2, 0.8, True)
