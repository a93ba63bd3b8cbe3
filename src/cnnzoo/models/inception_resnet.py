"""Inception-ResNet-v2: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", AAAI 2017, arXiv 1602.07261.

``inception_resnet_v2`` is the released layout (the TF-slim checkpoint that
timm and Keras port), which the pretrained weights need. It differs from the
paper's figures: the stem ends in ``Mixed_5b`` (320 channels) instead of the
Inception-v4 stem of Figure 3, the stages are 10-20-10 blocks instead of the
figure's 5-10-5, and a 1x1 conv widens the last map to 1536 channels before
pooling. ``inception_resnet_v2_paper`` has the paper's stem and depths. Both
drop 20% of the pooled features before the classifier (Figure 15: "Dropout
(keep 0.8)"). Every residual block is scaled (Section 3.3: "scaling down the
residuals before adding them", factors 0.1 to 0.3; the release uses 0.17,
0.10, 0.20 in stages A, B, C) and can be dropped with stochastic depth
(Huang et al. 2016, arXiv 1603.09382), see ``cnnzoo.layers.drop``.

Names follow timm's (``Block35 / Block17 / Block8``, ``repeat``, ``mixed_6a``,
...), so timm's weights load by name.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..layers import Concat, ConvBnAct, DropPathSpec, StochasticDepth
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier
from .inception_v4 import Stem

PAPER = dict(paper="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
             arxiv="1602.07261", input_size=299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
             top1_err=19.9, top5_err=4.9, eval_note="single crop, ImageNet val")

# Blocks in stages A, B, C (Block35, Block17, Block8) and their residual scales.
RELEASED_DEPTHS = (10, 20, 10)
PAPER_DEPTHS = (5, 10, 5)  # the paper's overall schema, which PolyNet calls "IR 5-10-5"
RELEASED_SCALES = (0.17, 0.10, 0.20)
# Channels of stages A, B, C after each stem. The paper's follow from its stem (384) and the reductions: 384,
# 384 + 384 + 384 = 1152, 1152 + 384 + 288 + 320 = 2144. Its Figures 17 and 19 print 1154 and 2048 for the
# blocks' final 1x1, which no reduction produces; we take the widths that the reductions give.
STAGE_WIDTHS = {"released": (320, 1088, 2080), "paper": (384, 1152, 2144)}

ConvBlock = Callable[..., nn.Module]


def biased_1x1(in_chs: int, out_chs: int) -> nn.Conv2d:
    """The release's linear 1x1 that restores a block's width: a conv with bias, no BN (TF-slim)."""
    return nn.Conv2d(in_chs, out_chs, 1)


def _run(layer: nn.Module, x: Tensor, order: int) -> Tensor:
    """``layer(x)``, passing ``order`` to layers that keep one BN set per order of a PolyNet poly-N module.

    Such layers say so with a true ``per_order`` attribute; every other layer
    (``ConvBnAct``, pools, ...) is called as usual, so ``order`` changes nothing
    in Inception-ResNet-v2 itself.
    """
    if isinstance(layer, nn.Sequential):
        for sub in layer:
            x = _run(sub, x, order)
        return x
    return layer(x, order) if getattr(layer, "per_order", False) else layer(x)


class InceptionResidual(nn.Module):
    """act(x + scale * F(x)), the residual branch F gated by stochastic depth.

    F (``transform``) runs the block's parallel branches, concatenates them and
    maps them back to the block's width with the linear 1x1 ``conv2d``. PolyNet
    (``cnnzoo.models.polynet``) composes these same F's into its PolyInception
    modules: there ``width`` and the injected ``conv_block`` / ``up_block``
    give its layout (wider stages, a BN after the 1x1).
    """

    def __init__(self, scale: float, drop_path: StochasticDepth | None, no_relu: bool):
        super().__init__()
        self.scale = scale
        self.drop_path = drop_path
        # Not in place: a dropped block returns x itself.
        self.act = nn.Identity() if no_relu else nn.ReLU()

    def branches(self) -> tuple[nn.Module, ...]:
        raise NotImplementedError

    def transform(self, x: Tensor, order: int = 0) -> Tensor:
        """F(x): the branches, concatenated in order, then the linear 1x1 (``order``: see ``_run``)."""
        return _run(self.conv2d, torch.cat([_run(branch, x, order) for branch in self.branches()], 1), order)

    def residual(self, x: Tensor) -> Tensor:
        return self.transform(x) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_path is None:
            return self.act(x + self.residual(x))
        return self.act(self.drop_path(x, self.residual, x))


class Block35(InceptionResidual):
    """Inception-ResNet-A (Figure 16; 35 x 35 grid, 320 channels in the release): 1x1 | 1x1-3x3 | 1x1-3x3-3x3."""

    def __init__(self, scale: float = 1.0, drop_path: StochasticDepth | None = None, no_relu: bool = False,
                 conv_block: ConvBlock = ConvBnAct, width: int = 320, up_block: ConvBlock = biased_1x1):
        super().__init__(scale, drop_path, no_relu)
        self.branch0 = conv_block(width, 32, 1)
        self.branch1 = nn.Sequential(conv_block(width, 32, 1), conv_block(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(conv_block(width, 32, 1), conv_block(32, 48, 3, padding=1),
                                     conv_block(48, 64, 3, padding=1))
        self.conv2d = up_block(32 + 32 + 64, width)

    def branches(self) -> tuple[nn.Module, ...]:
        return self.branch0, self.branch1, self.branch2


class Block17(InceptionResidual):
    """Inception-ResNet-B (Figure 17; 17 x 17 grid, 1088 channels in the release): 1x1 | 1x1-1x7-7x1."""

    def __init__(self, scale: float = 1.0, drop_path: StochasticDepth | None = None, no_relu: bool = False,
                 conv_block: ConvBlock = ConvBnAct, width: int = 1088, up_block: ConvBlock = biased_1x1):
        super().__init__(scale, drop_path, no_relu)
        self.branch0 = conv_block(width, 192, 1)
        self.branch1 = nn.Sequential(conv_block(width, 128, 1), conv_block(128, 160, (1, 7), padding=(0, 3)),
                                     conv_block(160, 192, (7, 1), padding=(3, 0)))
        self.conv2d = up_block(192 + 192, width)

    def branches(self) -> tuple[nn.Module, ...]:
        return self.branch0, self.branch1


class Block8(InceptionResidual):
    """Inception-ResNet-C (Figure 19; 8 x 8 grid, 2080 channels in the release): 1x1 | 1x1-1x3-3x1."""

    def __init__(self, scale: float = 1.0, drop_path: StochasticDepth | None = None, no_relu: bool = False,
                 conv_block: ConvBlock = ConvBnAct, width: int = 2080, up_block: ConvBlock = biased_1x1):
        super().__init__(scale, drop_path, no_relu)
        self.branch0 = conv_block(width, 192, 1)
        self.branch1 = nn.Sequential(conv_block(width, 192, 1), conv_block(192, 224, (1, 3), padding=(0, 1)),
                                     conv_block(224, 256, (3, 1), padding=(1, 0)))
        self.conv2d = up_block(192 + 256, width)

    def branches(self) -> tuple[nn.Module, ...]:
        return self.branch0, self.branch1


# The block of each stage, as PolyNet names its stages.
STAGE_BLOCKS: dict[str, type[InceptionResidual]] = {"A": Block35, "B": Block17, "C": Block8}


def mixed_5b(conv_block: ConvBlock) -> Concat:
    """The end of the released stem: 192 -> 96 + 64 + 96 + 64 = 320 channels at 35 x 35."""
    return Concat(
        branch0=conv_block(192, 96, 1),
        branch1=nn.Sequential(conv_block(192, 48, 1), conv_block(48, 64, 5, padding=2)),
        branch2=nn.Sequential(conv_block(192, 64, 1), conv_block(64, 96, 3, padding=1),
                              conv_block(96, 96, 3, padding=1)),
        branch3=nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                              conv_block(192, 64, 1)),
    )


def mixed_6a(conv_block: ConvBlock, in_chs: int = 320) -> Concat:
    """Reduction-A (Figure 7, Table 1: k=256, l=256, m=384, n=384): 35 -> 17, C -> 384 + 384 + C channels."""
    return Concat(
        branch0=conv_block(in_chs, 384, 3, stride=2),
        branch1=nn.Sequential(conv_block(in_chs, 256, 1), conv_block(256, 256, 3, padding=1),
                              conv_block(256, 384, 3, stride=2)),
        branch2=nn.MaxPool2d(3, stride=2),
    )


def mixed_7a(conv_block: ConvBlock, in_chs: int = 1088) -> Concat:
    """Reduction-B (Figure 18): 17 -> 8, C -> 384 + 288 + 320 + C channels."""
    return Concat(
        branch0=nn.Sequential(conv_block(in_chs, 256, 1), conv_block(256, 384, 3, stride=2)),
        branch1=nn.Sequential(conv_block(in_chs, 256, 1), conv_block(256, 288, 3, stride=2)),
        branch2=nn.Sequential(conv_block(in_chs, 256, 1), conv_block(256, 288, 3, padding=1),
                              conv_block(288, 320, 3, stride=2)),
        branch3=nn.MaxPool2d(3, stride=2),
    )


class InceptionResNetV2(ImageClassifier):
    """Inception-ResNet-v2: stem, stages A, B, C of scaled residual Inception blocks, 1x1 to 1536, pool, FC.

    Args:
        stem: ``"released"`` (the TF-slim stem ending in ``mixed_5b``, 320 channels) or ``"paper"``
            (Figure 3, 384 channels: Inception-v4's ``Stem``, the same paper's); the stages' widths follow
            (``STAGE_WIDTHS``).
        depths: blocks in stages A, B, C (``Block35``, ``Block17``, ``Block8``); the release's 10-20-10,
            the paper's figure 5-10-5; PolyNet's ablations start from 3-6-3 and 6-12-6.
        scales: residual scale of the blocks of each stage. The release's last ``Block8`` has no scale
            and no ReLU (TF-slim's ``block8(activation_fn=None)``); it counts in ``depths[2]``.
        drop_path: stochastic depth over all residual blocks (``create_model`` builds it from the
            ``drop_path_*`` keywords); see ``cnnzoo.layers.drop``.
        drop_rate: dropout before the classifier (Figure 15: keep 0.8, i.e. 0.2 dropped).
        conv_block: conv-BN-ReLU builder (BN eps 1e-3 as in TF-slim).
        norm_layer: ``norm_layer(channels, eps=...)`` instead of BN in every ``conv_block`` (default: BN).
    """

    classifier = "classif"  # timm's name

    def __init__(
        self,
        depths: tuple[int, int, int] = RELEASED_DEPTHS,
        scales: tuple[float, float, float] = RELEASED_SCALES,
        stem: Literal["released", "paper"] = "released",
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path: DropPathSpec | None = None,
        conv_block: ConvBlock = ConvBnAct,
        norm_layer: Callable[..., nn.Module] | None = None,
    ):
        super().__init__()
        if norm_layer is not None:
            conv_block = partial(conv_block, norm_layer=norm_layer)
        if len(depths) != 3 or min(depths) < 1:
            raise ValueError(f"depths must be three block counts >= 1 (stages A, B, C), got {depths}")
        if stem not in STAGE_WIDTHS:
            raise ValueError(f"unknown stem {stem!r}: use 'released' or 'paper'")
        width_a, width_b, width_c = STAGE_WIDTHS[stem]
        self.paper_stem = stem == "paper"
        if self.paper_stem:
            self.stem = Stem(in_chans, conv_block)
        else:  # the release's stem, under its own (timm's) names
            self.conv2d_1a = conv_block(in_chans, 32, 3, stride=2)
            self.conv2d_2a = conv_block(32, 32, 3)
            self.conv2d_2b = conv_block(32, 64, 3, padding=1)
            self.maxpool_3a = nn.MaxPool2d(3, stride=2)
            self.conv2d_3b = conv_block(64, 80, 1)
            self.conv2d_4a = conv_block(80, 192, 3)
            self.maxpool_5a = nn.MaxPool2d(3, stride=2)
            self.mixed_5b = mixed_5b(conv_block)

        gates = iter((drop_path or DropPathSpec()).gates(sum(depths), owner=self))

        def blocks(block: type[InceptionResidual], n: int, scale: float, width: int) -> list[InceptionResidual]:
            return [block(scale, next(gates), conv_block=conv_block, width=width) for _ in range(n)]

        self.repeat = nn.Sequential(*blocks(Block35, depths[0], scales[0], width_a))
        self.mixed_6a = mixed_6a(conv_block, width_a)
        self.repeat_1 = nn.Sequential(*blocks(Block17, depths[1], scales[1], width_b))
        self.mixed_7a = mixed_7a(conv_block, width_b)
        self.repeat_2 = nn.Sequential(*blocks(Block8, depths[2] - 1, scales[2], width_c))
        self.block8 = Block8(1.0, next(gates), no_relu=True, conv_block=conv_block, width=width_c)
        self.num_features = 1536
        self.conv2d_7b = conv_block(width_c, self.num_features, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classif = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        if self.paper_stem:
            x = self.stem(x)  # N x 384 x 35 x 35 at 299
        else:
            x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))  # N x 64 x 147 x 147 at 299
            x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))  # N x 192 x 71 x 71
            x = self.mixed_5b(self.maxpool_5a(x))  # N x 320 x 35 x 35
        x = self.mixed_6a(self.repeat(x))  # N x 1088 x 17 x 17 (paper stem: 1152)
        x = self.mixed_7a(self.repeat_1(x))  # N x 2080 x 8 x 8 (paper stem: 2144)
        x = self.block8(self.repeat_2(x))
        return self.conv2d_7b(x)  # N x 1536 x 8 x 8

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))  # N x 1536
        return x if pre_logits else self.classif(x)


@register_converter(InceptionResNetV2, "timm")
def _from_timm(state_dict: dict) -> dict:
    return dict(state_dict)  # same names: conv2d_1a ... conv2d_7b, classif


@register_model(**PAPER, params=55_843_464, macs=13.16)
def inception_resnet_v2(**kwargs) -> InceptionResNetV2:
    return InceptionResNetV2(RELEASED_DEPTHS, **kwargs)


# The paper gives no parameter count for its figures' network, so none is claimed.
@register_model(**PAPER)
def inception_resnet_v2_paper(**kwargs) -> InceptionResNetV2:
    """The paper's schema (Figure 15): its stem (Figure 3), 5 x A, 10 x B, 5 x C at the widths that stem gives.

    Kept from the release, as the paper's figures leave them open or contradict each other: the residual
    scales (0.17, 0.10, 0.20), the biased final 1x1 of each block, the unscaled last Block8 and the 1x1 conv
    to 1536 channels before pooling.
    """
    return InceptionResNetV2(PAPER_DEPTHS, stem="paper", **kwargs)
