"""One module per paper family; importing them registers their models."""

from . import alexnet, densenet, googlenet, inception_resnet, lenet, polynet, resnet, vgg, xception, mobilenet, shufflenet, pyramidnet, efficientnet  # noqa: F401
