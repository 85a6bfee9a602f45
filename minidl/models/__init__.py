"""The ImageNet-era architectures of the lecture, built only from ``minidl.nn``.

    from minidl import models
    net = models.alexnet()                      # the paper's AlexNet, towers as grouped convs (227x227)
    net = models.resnet50()                     # torchvision's names: loads torchvision weights
    print(models.summary(net, (3, 224, 224)))   # layer table: shapes, parameters, mult-adds, RF

``get_model(name)`` builds any model by its command-line name (``MODELS`` lists them, with the
input shape each expects); ``load_torchvision(model, path)`` loads a ``.pth`` saved by PyTorch.
"""
from functools import partial

from minidl.models.alexnet import AlexNet, AlexNetTorchvision, alexnet  # noqa: F401
from minidl.models.zfnet import ZFNet, zfnet  # noqa: F401
from minidl.models.vgg import (VGG, vgg11, vgg13, vgg16, vgg19,  # noqa: F401
                               vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn)
from minidl.models.googlenet import GoogLeNet, Inception, InceptionAux, googlenet  # noqa: F401
from minidl.models.resnet import (ResNet, BasicBlock, Bottleneck, ShortcutA, CifarResNet,  # noqa: F401
                                  resnet18, resnet34, resnet50, resnet101, resnet152,
                                  plain18, plain34, resnet_cifar, plain_cifar)
from minidl.models.nin import NiN, nin  # noqa: F401
from minidl.models.tiny_alexnet import TinyAlexNet, tiny_alexnet  # noqa: F401
from minidl.models.summary import summary, Summary, receptive_field  # noqa: F401
from minidl.models.torchvision import load_torchvision, torch_state_dict  # noqa: F401

IMAGENET = (3, 224, 224)
CIFAR = (3, 32, 32)

# command-line name -> (constructor, the input shape it is drawn for)
MODELS = {
    "alexnet": (alexnet, (3, 227, 227)),
    "alexnet_torchvision": (partial(alexnet, variant="torchvision"), IMAGENET),
    "zfnet": (zfnet, IMAGENET),
    **{f"vgg{d}": (f, IMAGENET) for d, f in ((11, vgg11), (13, vgg13), (16, vgg16), (19, vgg19))},
    **{f"vgg{d}_bn": (f, IMAGENET) for d, f in ((11, vgg11_bn), (13, vgg13_bn), (16, vgg16_bn), (19, vgg19_bn))},
    "googlenet": (googlenet, IMAGENET),
    "googlenet_torchvision": (partial(googlenet, variant="torchvision"), IMAGENET),
    **{f"resnet{d}": (f, IMAGENET) for d, f in ((18, resnet18), (34, resnet34), (50, resnet50),
                                                (101, resnet101), (152, resnet152))},
    "plain18": (plain18, IMAGENET),
    "plain34": (plain34, IMAGENET),
    **{f"resnet{d}_cifar": (partial(resnet_cifar, d), CIFAR) for d in (20, 32, 44, 56, 110)},
    **{f"plain{d}_cifar": (partial(plain_cifar, d), CIFAR) for d in (20, 32, 44, 56, 110)},
    "nin": (nin, IMAGENET),
    # minidl train's default; it adapts to the data (in_channels, image_size): drawn for the digits
    "tiny_alexnet": (tiny_alexnet, (1, 32, 32)),
}


def get_model(name, **kwargs):
    """Build a model by name (see ``MODELS``); keyword arguments go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name][0](**kwargs)


def input_shape(name):
    """The (C, H, W) input a named model is drawn for (227 for the paper's AlexNet, 32 for CIFAR)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name][1]
