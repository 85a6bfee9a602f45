"""Helpers shared by the model tests (imported as ``models_testing``; a plain module, not a conftest):
float64 casting, gradient-check inputs, torchvision comparison."""
import numpy as np

import minidl as md


def cast_float64(model):
    """Make every floating parameter and buffer float64 (for gradient checks); returns the model."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for _, m, name in list(model.named_buffers()):
        arr = getattr(m, name)
        if arr.dtype.kind == "f":
            object.__setattr__(m, name, arr.astype(np.float64))
    return model


def randomize_bn(model, seed=0):
    """Give every BatchNorm non-trivial affine parameters and running statistics, so that a
    comparison in eval mode exercises them (fresh ones are the identity)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, md.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(m.weight.dtype)
            m.bias.data = rng.uniform(-0.5, 0.5, c).astype(m.bias.dtype)
            object.__setattr__(m, "running_mean", rng.uniform(-0.5, 0.5, c).astype(m.running_mean.dtype))
            object.__setattr__(m, "running_var", rng.uniform(0.5, 1.5, c).astype(m.running_var.dtype))
    return model


def params_and_x(block, shape, seed=0):
    """(fn, inputs) for md.gradcheck: the input x and every parameter of ``block`` are checked."""
    rng = np.random.default_rng(seed)
    x = md.tensor(rng.standard_normal(shape), requires_grad=True, dtype="float64")
    params = block.parameters()

    def fn(x, *ps):
        out = block(x)
        return out if not isinstance(out, tuple) else out[0]

    return fn, [x] + params


def compare_with_torchvision(ours, tv_model, shape, rtol=1e-4, seed=0):
    """Load tv_model's weights into ours, run both in eval mode on the same input, compare logits."""
    import torch
    ours.load_state_dict({k: v.numpy() for k, v in tv_model.state_dict().items()})
    ours.eval()
    tv_model.eval()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with md.no_grad():
        y = ours(md.tensor(x)).numpy()
    with torch.no_grad():
        ref = tv_model(torch.from_numpy(x)).numpy()
    assert y.shape == ref.shape
    err = np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12)
    assert err <= rtol, f"relative error {err:.2e} against torchvision"
    assert set(ours.state_dict()) == set(tv_model.state_dict())



def randomize_bn_torch(model, seed=0):
    """randomize_bn for a torch model (so that eval-mode comparisons exercise BatchNorm)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
