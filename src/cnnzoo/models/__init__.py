"""One module per paper family; importing them registers their models."""

from . import alexnet, densenet, lenet, resnet, vgg  # noqa: F401
