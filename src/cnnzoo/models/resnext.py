"""ResNeXt: Xie, Girshick, Dollár, Tu, He, "Aggregated Residual Transformations for Deep Neural Networks",
CVPR 2017, arXiv 1611.05431.

A ResNet whose bottleneck aggregates C transformations of the same topology
(Fig. 3): C paths of 1x1 (d channels), 3x3 (d), 1x1, summed. Fig. 3(c), the
form built here, is the same block with one grouped 3x3 convolution of C
groups over C x d channels. "32x4d" is cardinality C = 32 and bottleneck width
d = 4 in the first stage; both double with each stage's width, as ResNet's.
The block is ``cnnzoo.models.resnet.Bottleneck`` with ``groups=C`` and
``base_width=d``; stages, stem and head are ResNet's (Table 1). Stride 2 sits
in the 3x3 of each stage's first block, as the paper says it does (Section 4),
which is torchvision's layout: its weights load unchanged.

Table 2 trades cardinality for width at about the same cost (ResNeXt-50:
1x64d, 2x40d, 4x24d, 8x14d, 32x4d, ``TABLE_2``); ``resnext50(cardinality,
bottleneck_width)`` builds any row, for ``cnnzoo info resnext50_32x4d --compare ...``.
"""

from __future__ import annotations

from ..registry import register_model
from .resnet import _IN_STAGE_DS, Bottleneck, ResNet

PAPER = dict(paper="Aggregated Residual Transformations for Deep Neural Networks", arxiv="1611.05431")

# Table 2: cardinality C -> bottleneck width d of ResNeXt-50 settings that keep ResNet-50's complexity.
TABLE_2 = {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}


class ResNeXt(ResNet):
    """ResNet-``depth`` with aggregated transformations: ``cardinality`` groups of ``bottleneck_width``
    channels in every bottleneck's 3x3 (first stage; x2 per stage). Other keywords are ``ResNet``'s."""

    def __init__(self, depth: int, cardinality: int, bottleneck_width: int, **kwargs):
        if depth not in _IN_STAGE_DS or depth < 50:
            raise ValueError(f"ResNeXt is built on the bottleneck ResNets: depth must be 50, 101 or 152, got {depth}")
        super().__init__(Bottleneck, _IN_STAGE_DS[depth], groups=cardinality, base_width=bottleneck_width, **kwargs)
        self.cardinality, self.bottleneck_width = cardinality, bottleneck_width


def resnext50(cardinality: int = 32, bottleneck_width: int = 4, **kwargs) -> ResNeXt:
    """ResNeXt-50 at any (C, d): the rows of Table 2 (``TABLE_2``) cost about what ResNet-50 costs."""
    return ResNeXt(50, cardinality, bottleneck_width, **kwargs)


# The paper's 4.1 G (Table 1's FLOPs, one multiply-add each) is rounded; this layout, the one the paper
# describes and torchvision releases, counts 4.230 G conv + linear MACs (tests/test_resnext.py), which does not
# round to it, so no MACs reference is claimed.
@register_model(**PAPER, params=25_028_904, top1_err=22.2, eval_note="single crop 224, ImageNet val")  # Table 3
def resnext50_32x4d(**kwargs) -> ResNeXt:
    return resnext50(32, 4, **kwargs)


# Table 3 reports ResNeXt-101 (32x4d) at 224; the reference figures carry no error for it, so none is claimed.
@register_model(**PAPER)
def resnext101_32x4d(**kwargs) -> ResNeXt:
    return ResNeXt(101, 32, 4, **kwargs)


@register_model(**PAPER, params=88_791_336)
def resnext101_32x8d(**kwargs) -> ResNeXt:
    """ResNeXt-101 with twice the bottleneck width (d = 8), the one torchvision publishes weights for."""
    return ResNeXt(101, 32, 8, **kwargs)
