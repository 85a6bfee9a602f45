"""Loading weights saved by PyTorch/torchvision into the torchvision-compatible minidl models.

The compatible models (``alexnet(variant="torchvision")``, the VGGs, the ResNets,
``googlenet(variant="torchvision")``) use torchvision's parameter names, so a live torchvision
model's weights load directly:

    net.load_state_dict({k: v.numpy() for k, v in tv_model.state_dict().items()})

and a ``.pth`` file (e.g. torchvision's downloaded ``resnet18-f37072fd.pth``) loads with
``load_torchvision(net, path)``. PyTorch is needed only for reading ``.pth`` files and is
imported only then; minidl's own ``.npz`` files (``Module.save`` / ``Module.load``) need NumPy only.
"""
import numpy as np

TORCH_HINT = ("reading a .pth file needs PyTorch (pip install torch); minidl itself does not. "
              "Alternatively convert once where torch is installed: "
              "numpy.savez('w.npz', **{k: v.numpy() for k, v in torch.load('w.pth').items()}) "
              "and load the .npz with model.load('w.npz')")


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"load_torchvision: {TORCH_HINT} ({e})") from None
    return torch


def torch_state_dict(state):
    """A state dict of torch tensors (or a checkpoint dict holding one under "state_dict" or
    "model") -> name -> float NumPy array, with DataParallel's "module." prefix removed."""
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    out = {}
    for k, v in state.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    return out


def load_torchvision(model, path, strict=True):
    """Load a ``.pth`` state dict saved by PyTorch (torchvision's pretrained files) into ``model``.

    Keys and shapes are checked by ``Module.load_state_dict``: a missing, extra or wrongly shaped
    key raises an error naming it. BatchNorm's ``num_batches_tracked`` is accepted and ignored.
    Returns the model.
    """
    torch = _import_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch older than 1.13 has no weights_only
        state = torch.load(path, map_location="cpu")
    return model.load_state_dict(torch_state_dict(state), strict=strict)
