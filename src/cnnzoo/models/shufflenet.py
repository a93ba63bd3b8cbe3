"""ShuffleNet: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
Devices", CVPR 2018, arXiv 1707.01083.

Table 1: a 3x3/2 convolution (24 filters) and a 3x3/2 max-pool, three stages
of ShuffleNet units (Fig. 2), global average pool, FC. A unit is a bottleneck
whose 1x1 convolutions are grouped (``g`` groups) and whose 3x3 is depthwise:
1x1 GConv -> BN -> ReLU -> channel shuffle -> 3x3 DWConv -> BN -> 1x1 GConv
-> BN, added to the input (Fig. 2b) or, in the first unit of a stage (stride
2), concatenated with a 3x3/2 average pool of the input (Fig. 2c); ReLU after
the sum or concatenation. The bottleneck has a quarter of the unit's output
channels. The channel shuffle lets the next grouped convolution see every
group's output (Fig. 1); ``channel_shuffle=False`` removes it (Table 3's
ablation).

``ShuffleNet s x`` scales every layer's filters by s (Section 4.1): the
``scale`` keyword. The paper counts complexity as mult-adds and calls them FLOPs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import SelectAdaptivePool2d
from ..registry import register_model
from .base import ImageClassifier, he_init_

PAPER = dict(paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
             arxiv="1707.01083", eval_note="single crop 224, ImageNet val")

# Table 1: the stem's filters, the units per stage (Stage 2, 3, 4; the first of each strides 2), and the output
# channels of each stage for g = 1, 2, 3, 4, 8 groups at 1x; its last row, the complexity in million mult-adds.
STEM_CHS = 24
STAGE_REPEATS = (4, 8, 4)
STAGE_OUT_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                      8: (384, 768, 1536)}
TABLE_1_MFLOPS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
# The stem's filters at each scale in the authors' release (megvii ShuffleNet-Series): 24 x s, except that 1.5x
# keeps 24. With these the counts come out at the complexities printed for those models (0.5x g3: 38 M,
# 1.5x g3: 292 M, 2x g3: 524 M); other scales get round(24 x s).
RELEASED_STEM_CHS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
BOTTLENECK_RATIO = 4  # the bottleneck has "1/4 of the output channels" of its unit


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Fig. 1c: reshape the channels to (groups, n), transpose to (n, groups) and flatten back."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """Fig. 2b (stride 1: add) and Fig. 2c (stride 2: concatenate with a 3x3/2 average pool of the input).

    Args:
        in_chs, out_chs: the unit's input and output channels; with stride 2 the branch makes
            ``out_chs - in_chs`` of them and the pooled input the rest.
        groups: g, the groups of both 1x1 convolutions.
        first_groups: groups of the first 1x1 only (1 in the network's first unit: "we do not apply
            group convolution on the first pointwise layer because the number of input channels is
            relatively small").
        channel_shuffle: shuffle after the first 1x1 convolution (False: Table 3's "no shuffle").
    """

    def __init__(self, in_chs: int, out_chs: int, groups: int, stride: int = 1, first_groups: int | None = None,
                 channel_shuffle: bool = True):
        super().__init__()
        first_groups = groups if first_groups is None else first_groups
        mid_chs = out_chs // BOTTLENECK_RATIO
        branch_chs = out_chs - in_chs if stride == 2 else out_chs
        for what, chs, g in (("input", in_chs, first_groups), ("bottleneck", mid_chs, groups),
                             ("branch output", branch_chs, groups)):
            if chs <= 0 or chs % g:
                raise ValueError(f"ShuffleNet unit {in_chs}->{out_chs}: {what} channels {chs} do not split into "
                                 f"{g} groups; choose a scale or groups that divide the channels")
        self.stride = stride
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, groups=first_groups, bias=False)  # 1x1 GConv
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.shuffle = ChannelShuffle(groups) if channel_shuffle and groups > 1 else nn.Identity()
        self.conv2 = nn.Conv2d(mid_chs, mid_chs, 3, stride, 1, groups=mid_chs, bias=False)  # 3x3 DWConv
        self.bn2 = nn.BatchNorm2d(mid_chs)  # no ReLU after the depthwise conv (Section 3.2)
        self.conv3 = nn.Conv2d(mid_chs, branch_chs, 1, groups=groups, bias=False)  # 1x1 GConv
        self.bn3 = nn.BatchNorm2d(branch_chs)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.shuffle(self.act1(self.bn1(self.conv1(x))))
        out = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        if self.stride == 2:
            return self.act(torch.cat([self.shortcut(x), out], 1))
        return self.act(self.shortcut(x) + out)


class ShuffleNetV1(ImageClassifier):
    """ShuffleNet (Table 1) with ``groups`` g and scale factor s.

    Args:
        groups: g, groups of the pointwise convolutions: 1, 2, 3, 4 or 8 (Table 1's columns).
        scale: s, every layer's filters x s ("ShuffleNet s x", Section 4.1): 0.25, 0.5, 1, 1.5, 2.
            The stem follows the release (``RELEASED_STEM_CHS``: 1.5x keeps 24 filters).
        channel_shuffle: False removes every channel shuffle (Table 3's ablation).
    """

    classifier = "fc"

    def __init__(self, groups: int = 3, scale: float = 1.0, channel_shuffle: bool = True, num_classes: int = 1000,
                 in_chans: int = 3):
        super().__init__()
        if groups not in STAGE_OUT_CHANNELS:
            raise ValueError(f"ShuffleNet groups must be one of {sorted(STAGE_OUT_CHANNELS)} (Table 1), got {groups}")
        if not scale > 0:
            raise ValueError(f"ShuffleNet scale must be positive (the paper uses 0.25, 0.5, 1, 1.5, 2), got {scale}")
        self.groups, self.scale = groups, scale
        chs = RELEASED_STEM_CHS.get(scale, round(STEM_CHS * scale))
        self.conv1 = nn.Conv2d(in_chans, chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chs)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        self.feature_info = [dict(num_chs=chs, reduction=2, module="act1"),
                             dict(num_chs=chs, reduction=4, module="maxpool")]
        for i, (repeats, out_chs) in enumerate(zip(STAGE_REPEATS, STAGE_OUT_CHANNELS[groups])):
            out_chs = round(out_chs * scale)
            units = []
            for u in range(repeats):
                first_groups = 1 if i == 0 and u == 0 else groups
                units.append(ShuffleUnit(chs, out_chs, groups, 2 if u == 0 else 1, first_groups, channel_shuffle))
                chs = out_chs
            stages.append(nn.Sequential(*units))
            self.feature_info.append(dict(num_chs=chs, reduction=2 ** (i + 3), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)  # Table 1's Stage 2, 3, 4

        self.num_features = chs
        self.global_pool = SelectAdaptivePool2d("avg")
        self.fc = nn.Linear(chs, num_classes)
        he_init_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))  # N x 24 x 112 x 112 at 224, 1x
        x = self.maxpool(x)  # N x 24 x 56 x 56
        return self.stages(x)  # N x 960 x 7 x 7 (g = 3)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)  # N x 960 (g = 3)
        return x if pre_logits else self.fc(x)


# Table 2 puts every 1x network at the complexity level "140 MFLOPs", to two significant digits (0.14 G); that
# holds for g = 1, 2, 3, 8 (g = 4 counts 134 M: 0.13 G). Table 1's per-g counts are checked to 1.5 M in
# tests/test_shufflenet.py. Table 2's 0.5x row is at 38 MFLOPs; 292 and 524 M are the release's figures.
@register_model(params=1_531_936, macs=0.14, **PAPER)
def shufflenet_v1_g1(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=1, **kwargs)


@register_model(params=1_733_848, macs=0.14, **PAPER)
def shufflenet_v1_g2(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=2, **kwargs)


@register_model(params=1_865_728, macs=0.14, top1_err=32.6, **PAPER)  # Table 2: 1x, g = 3
def shufflenet_v1_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, **kwargs)


@register_model(params=1_968_344, **PAPER)
def shufflenet_v1_g4(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=4, **kwargs)


@register_model(params=2_434_768, macs=0.14, **PAPER)
def shufflenet_v1_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, **kwargs)


@register_model(params=718_324, macs=0.038, **PAPER)
def shufflenet_v1_g3_0_5x(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=0.5, **kwargs)


@register_model(params=3_442_168, macs=0.292, **PAPER)
def shufflenet_v1_g3_1_5x(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=1.5, **kwargs)


@register_model(params=5_450_776, macs=0.524, **PAPER)
def shufflenet_v1_g3_2x(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=2.0, **kwargs)
