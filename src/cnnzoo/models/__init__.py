"""One module per paper family; importing them registers their models."""

from . import (  # noqa: F401
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    inception_resnet,
    inception_v3,
    inception_v4,
    lenet,
    mobilenet,
    polynet,
    pyramidnet,
    resnet,
    resnext,
    shufflenet,
    squeezenet,
    vgg,
    xception,
)
