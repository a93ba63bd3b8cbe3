"""One module per paper family; importing them registers their models."""

from . import alexnet, densenet, googlenet, lenet, resnet, vgg, xception  # noqa: F401
