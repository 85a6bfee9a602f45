"""Loading weights saved by PyTorch/torchvision into the torchvision-compatible minidl models.

The compatible models (``alexnet(variant="torchvision")``, the VGGs, the ResNets,
``googlenet(variant="torchvision")``) use torchvision's parameter names, so a live torchvision
model's weights load directly:

    net.load_state_dict({k: v.numpy() for k, v in tv_model.state_dict().items()})

and a ``.pth`` file (e.g. torchvision's downloaded ``resnet18-f37072fd.pth``) loads with
``load_torchvision(net, path)`` — read by ``minidl.pth`` with NumPy only: PyTorch is not needed,
and nothing in the file is run. ``pretrained=True`` in the constructors finds or downloads
torchvision's file (``minidl.hub``).
"""
import numpy as np


def torch_state_dict(state):
    """A state dict of live torch tensors (or a checkpoint dict holding one under "state_dict" or
    "model") -> name -> NumPy array, with DataParallel's "module." prefix removed."""
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
    A checkpoint dict holding the weights under "state_dict" or "model", and DataParallel's
    "module." prefixes, are accepted. Returns the model.
    """
    from minidl import pth
    return model.load_state_dict(pth.load_state_dict(path), strict=strict)
