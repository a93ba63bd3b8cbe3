"""MobileNet: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv 1704.04861.

Table 1: a full 3x3/2 convolution, then thirteen depthwise separable
convolutions (a 3x3 depthwise conv, then a 1x1 pointwise conv, each followed
by batch norm and ReLU: Fig. 3), global average pooling and one FC layer.
Two hyper-parameters trade accuracy for cost (Section 3.3, 3.4): the width
multiplier ``alpha`` thins every layer to alpha x its channels, and the
resolution multiplier is simply the input size (224, 192, 160, 128): the
network is fully convolutional up to the global pool. Tables 6 and 7 below
list what the paper measured for each.

The separable convolution is ``cnnzoo.layers.SeparableConv2d``, Xception's,
with a BN and a ReLU between its two halves.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import Tensor, nn

from ..layers import ConvBnAct, SeparableConv2d
from ..registry import register_model
from ..weights import rename_modules, register_converter
from .base import ImageClassifier, he_init_

PAPER = dict(paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
             arxiv="1704.04861", eval_note="single crop 224, ImageNet val")

# Table 1: the stem's filters, then each depthwise separable layer as (stride of its depthwise conv, output
# channels), grouped into stages by resolution (input / 2, 4, 8, 16, 32). Table 1 prints "Conv dw / s2" for
# the last depthwise layer, but its input and output are both 7 x 7: the stride is 1 (as in every release).
STEM_CHS = 32
STAGES = (
    ((1, 64),),
    ((2, 128), (1, 128)),
    ((2, 256), (1, 256)),
    ((2, 512),) + ((1, 512),) * 5,
    ((2, 1024), (1, 1024)),
)

# Table 6 (width multiplier, at 224) and Table 7 (resolution, at alpha 1.0):
# ImageNet top-1 accuracy %, million mult-adds, million parameters.
TABLE_6 = {1.0: (70.6, 569, 4.2), 0.75: (68.4, 325, 2.6), 0.5: (63.7, 149, 1.3), 0.25: (50.6, 41, 0.5)}
TABLE_7 = {224: (70.6, 569, 4.2), 192: (69.1, 418, 4.2), 160: (67.2, 290, 4.2), 128: (64.4, 186, 4.2)}

# Table 4: the same network with full 3x3 convolutions in place of the separable ones ("Conv MobileNet",
# ``separable=False``) against MobileNet: top-1 accuracy %, million mult-adds, million parameters.
TABLE_4 = {"conv": (71.7, 4866, 29.3), "separable": (70.6, 569, 4.2)}

# The paper gives no BN epsilon; timm's weights (trained in PyTorch) use PyTorch's default.
BN_EPS = 1e-5


class DepthwiseSeparableBlock(nn.Module):
    """Fig. 3 (right): 3x3 depthwise conv, BN, ReLU, 1x1 pointwise conv, BN, ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act_layer: Callable[..., nn.Module] = nn.ReLU):
        super().__init__()
        self.conv = SeparableConv2d(in_chs, out_chs, 3, stride, mid_norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS),
                                    mid_act_layer=act_layer)
        self.bn = nn.BatchNorm2d(out_chs, eps=BN_EPS)
        self.act = act_layer(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def scaled(chs: int, alpha: float) -> int:
    """alpha x chs channels (Section 3.3), at least one."""
    return max(1, int(chs * alpha))


class MobileNetV1(ImageClassifier):
    """MobileNet (Table 1) with width multiplier ``alpha``.

    Args:
        alpha: width multiplier (Section 3.3): every layer has alpha x Table 1's channels.
        act_layer: the non-linearity; ``nn.ReLU`` is the paper's. The released models (TF-slim, timm)
            use ReLU6, which their weights need.
        drop_rate: dropout before the classifier (the paper uses none).
        separable: False replaces every depthwise separable layer by a full 3x3 convolution with BN and
            ReLU (Table 4's "Conv MobileNet": 8x the mult-adds for 1.1% more accuracy).
    """

    classifier = "fc"

    def __init__(self, alpha: float = 1.0, act_layer: Callable[..., nn.Module] = nn.ReLU, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, separable: bool = True):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"width multiplier alpha must be positive (the paper uses 1, 0.75, 0.5, 0.25), "
                             f"got {alpha}")
        chs = scaled(STEM_CHS, alpha)
        self.stem = ConvBnAct(in_chans, chs, 3, stride=2, padding=1, eps=BN_EPS, act_layer=act_layer)
        stages, self.feature_info, reduction = [], [], 2
        for i, stage in enumerate(STAGES):
            blocks = []
            for stride, out_chs in stage:
                out = scaled(out_chs, alpha)
                blocks.append(DepthwiseSeparableBlock(chs, out, stride, act_layer) if separable else
                              ConvBnAct(chs, out, 3, stride, padding=1, eps=BN_EPS, act_layer=act_layer))
                chs, reduction = scaled(out_chs, alpha), reduction * stride
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)

        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chs, num_classes)
        he_init_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # N x 32 x 112 x 112 at 224, alpha 1
        return self.stages(x)  # N x 1024 x 7 x 7

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))  # N x 1024
        return x if pre_logits else self.fc(x)


@register_converter(MobileNetV1, "timm")
def _from_timm(state_dict: dict) -> dict:
    """timm ``mobilenetv1_*``: conv_stem/bn1, blocks.S.B.conv_dw/bn1/conv_pw/bn2, classifier."""
    names = {"conv_stem": "stem.conv", "bn1": "stem.bn", "classifier": "fc"}
    for s, stage in enumerate(STAGES):
        for b in range(len(stage)):
            ours, theirs = f"stages.{s}.{b}", f"blocks.{s}.{b}"
            names.update({f"{theirs}.conv_dw": f"{ours}.conv.depthwise", f"{theirs}.bn1": f"{ours}.conv.mid_norm",
                          f"{theirs}.conv_pw": f"{ours}.conv.pointwise", f"{theirs}.bn2": f"{ours}.bn"})
    return rename_modules(state_dict, names)


def _entry(alpha: float) -> dict:
    """Table 6's row for ``alpha`` as reference figures."""
    return dict(top1_err=round(100 - TABLE_6[alpha][0], 1), **PAPER)


@register_model(params=4_231_976, macs=0.569, **_entry(1.0))
def mobilenet_v1_100(**kwargs) -> MobileNetV1:
    return MobileNetV1(alpha=1.0, **kwargs)


@register_model(params=2_585_560, macs=0.325, **_entry(0.75))
def mobilenet_v1_075(**kwargs) -> MobileNetV1:
    return MobileNetV1(alpha=0.75, **kwargs)


@register_model(params=1_331_592, macs=0.149, **_entry(0.5))
def mobilenet_v1_050(**kwargs) -> MobileNetV1:
    return MobileNetV1(alpha=0.5, **kwargs)


@register_model(params=470_072, macs=0.041, **_entry(0.25))
def mobilenet_v1_025(**kwargs) -> MobileNetV1:
    return MobileNetV1(alpha=0.25, **kwargs)


# The released layout: ReLU6 instead of ReLU (no parameters or MACs change).
@register_model(params=4_231_976, macs=0.569, **PAPER)
def mobilenet_v1_100_relu6(**kwargs) -> MobileNetV1:
    """MobileNet 1.0 with ReLU6, as TF-slim and timm (``mobilenetv1_100``) release it; their weights need it."""
    return MobileNetV1(alpha=1.0, act_layer=nn.ReLU6, **kwargs)
