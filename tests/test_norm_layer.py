"""The residual families build every normalisation layer through their ``norm_layer`` argument."""

import pytest
import torch
from torch import nn

import cnnzoo


class TaggedGroupNorm(nn.GroupNorm):
    """A normalisation that is not BatchNorm, built from (channels, eps=...) like the families call it."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(1, channels, eps=eps)


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "xception", "inception_resnet_v2_paper", "polynet_363_b_poly3"])
def test_norm_layer_replaces_every_batch_norm(name):
    with torch.device("meta"):
        default = cnnzoo.create_model(name)
        model = cnnzoo.create_model(name, norm_layer=TaggedGroupNorm)
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in default.modules())
    assert bns > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, TaggedGroupNorm) for m in model.modules()) == bns
