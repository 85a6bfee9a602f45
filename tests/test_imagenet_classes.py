from minidl.imagenet_classes import IMAGENET_CLASSES
from minidl.cli import imagenet_class_names


def test_thousand_names_in_torchvision_order():
    assert len(IMAGENET_CLASSES) == 1000
    # spot checks of the ILSVRC-2012 index order that torchvision's weights use
    assert IMAGENET_CLASSES[0] == "tench"
    assert IMAGENET_CLASSES[1] == "goldfish"
    assert IMAGENET_CLASSES[281] == "tabby"
    assert IMAGENET_CLASSES[999] == "toilet tissue"
    assert all(name and name == name.strip() for name in IMAGENET_CLASSES)


def test_classify_uses_the_names():
    assert imagenet_class_names() == list(IMAGENET_CLASSES)
