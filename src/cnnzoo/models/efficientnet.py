"""EfficientNet: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
arXiv 1905.11946.

EfficientNet-B0 (Table 1): a 3x3/2 convolution, seven stages of mobile
inverted bottlenecks (MBConv, from MnasNet: a 1x1 expansion by 1 or 6, a
depthwise k x k convolution, squeeze-and-excitation, a linear 1x1 projection;
residual where the shape allows), a 1x1 convolution to 1280 channels, global
average pooling, dropout and FC. Every activation is SiLU (Swish-1).

Training regularises with dropout 0.2 before the classifier and with
"drop connect" on the residual branches, which is stochastic depth (Huang et
al. 2016) with one gate per sample: ``cnnzoo.layers.StochasticDepth`` in
"row" mode, inverted (an open branch is divided by its survival probability
during training). The reference code's rate grows linearly with the block's
index: block i of the 16 (from 0) drops with ``drop_path_rate * i / 16`` (the
``"linear0"`` schedule of ``cnnzoo.layers.drop``).
"""

from __future__ import annotations

import re
from functools import partial

from torch import Tensor, nn

from ..layers import ConvBnAct, DropPathSpec, SelectAdaptivePool2d, StochasticDepth
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier, he_init_

PAPER = dict(paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", arxiv="1905.11946")

# Table 1, EfficientNet-B0: the stem's filters; stages 2-8 as (expansion ratio of MBConv, kernel, stride of
# the stage's first block, output channels, layers); the head's 1x1 convolution.
STEM_CHS = 32
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
HEAD_CHS = 1280
SE_RATIO = 0.25  # squeeze to a quarter of the block's input channels (MnasNet's, as the reference code)

# The reference code's BN epsilon is 1e-3; torchvision's efficientnet_b0 weights were evaluated with
# PyTorch's 1e-5, which is kept here so that they load exactly. Momentum 0.99 in TF's convention (Section 5.2).
BN_EPS = 1e-5
BN_MOMENTUM = 0.01

ConvBnSiLU = partial(ConvBnAct, eps=BN_EPS, act_layer=nn.SiLU)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel weights from the global average, via a 1x1 bottleneck."""

    def __init__(self, chs: int, squeeze_chs: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chs, squeeze_chs, 1)
        self.act = nn.SiLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_chs, chs, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))  # N x C x 1 x 1
        return x * scale


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE; the residual branch gated by drop connect where the shape allows."""

    def __init__(self, in_chs: int, out_chs: int, expand_ratio: int, kernel_size: int, stride: int,
                 drop_path: StochasticDepth | None = None):
        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.conv_pw = ConvBnSiLU(in_chs, mid_chs, 1) if expand_ratio != 1 else nn.Identity()
        self.conv_dw = ConvBnSiLU(mid_chs, mid_chs, kernel_size, stride, kernel_size // 2, groups=mid_chs)
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * SE_RATIO)))
        self.conv_pwl = ConvBnAct(mid_chs, out_chs, 1, eps=BN_EPS, act_layer=None)  # linear projection
        self.has_residual = stride == 1 and in_chs == out_chs
        # Only a residual branch can be dropped: a block that changes the shape has no gate.
        self.drop_path = (drop_path or StochasticDepth(mode="row", inverted=True)) if self.has_residual else None

    def branch(self, x: Tensor) -> Tensor:
        return self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))

    def forward(self, x: Tensor) -> Tensor:
        if not self.has_residual:
            return self.branch(x)
        return self.drop_path(x, self.branch, x)


class EfficientNet(ImageClassifier):
    """EfficientNet-B0 (Table 1).

    Args:
        drop_rate: dropout before the classifier (0.2 for B0, Section 5.2).
        drop_path: drop connect (``create_model`` builds it from ``drop_path_rate``, its largest rate); the
            paper trains with 0.2 ("survival probability 0.8", set in the efficientnet_b0_imagenet recipe;
            torchvision defaults to it). Per sample and inverted unless the spec says otherwise; see the module
            docstring.
    """

    classifier = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 drop_path: DropPathSpec | None = None):
        super().__init__()
        self.stem = ConvBnSiLU(in_chans, STEM_CHS, 3, stride=2, padding=1)
        num_blocks = sum(layers for *_, layers in STAGES)
        # Block i (from 0) survives with 1 - rate * i / N: the first block is never dropped. Drop connect's
        # convention (per sample, inverted) unless the spec says otherwise.
        gates = iter((drop_path or DropPathSpec()).gates(num_blocks, owner=self, mode="row", schedule="linear0",
                                                         inverted=True))
        chs, reduction, stages, self.feature_info = STEM_CHS, 2, [], []
        for i, (expand, kernel, stride, out_chs, layers) in enumerate(STAGES):
            blocks = []
            for b in range(layers):
                s = stride if b == 0 else 1
                blocks.append(MBConv(chs, out_chs, expand, kernel, s, next(gates)))
                chs = out_chs
            stages.append(nn.Sequential(*blocks))
            reduction *= stride
            if i + 1 < len(STAGES) and STAGES[i + 1][2] > 1:  # the last stage at this resolution
                self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.head = ConvBnSiLU(chs, HEAD_CHS, 1)
        self.feature_info.append(dict(num_chs=HEAD_CHS, reduction=reduction, module="head"))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = BN_MOMENTUM

        self.num_features = HEAD_CHS
        self.global_pool = SelectAdaptivePool2d("avg")
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(HEAD_CHS, num_classes)
        he_init_(self)  # the reference code's conv init: normal, std sqrt(2 / fan_out)
        bound = 1.0 / num_classes ** 0.5  # and its dense init: uniform in +-1/sqrt(outputs), zero bias
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # N x 32 x 112 x 112 at 224
        x = self.stages(x)  # N x 320 x 7 x 7
        return self.head(x)  # N x 1280 x 7 x 7

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x))  # N x 1280
        return x if pre_logits else self.fc(x)


def _torchvision_key(key: str) -> str:
    """features.0 -> stem, features.S.B.block.J -> stages.S-1.B.<part>, features.8 -> head, classifier.1 -> fc."""
    key = re.sub(r"^features\.0\.", "stem.", key)
    key = re.sub(r"^features\.8\.", "head.", key)
    key = key.replace("classifier.1.", "fc.")
    match = re.match(r"^features\.(\d)\.(\d+)\.block\.(\d)\.(.*)$", key)
    if match:
        stage, block, part, rest = int(match[1]) - 1, match[2], int(match[3]), match[4]
        parts = ("conv_pw", "conv_dw", "se", "conv_pwl") if STAGES[stage][0] != 1 else ("conv_dw", "se", "conv_pwl")
        key = f"stages.{stage}.{block}.{parts[part]}.{rest}"
    # Conv2dNormActivation's children 0 and 1 are ConvBnAct's conv and bn.
    return re.sub(r"^(stem|head|stages\.\d\.\d+\.conv_\w+)\.([01])\.",
                  lambda m: f"{m[1]}.{('conv', 'bn')[int(m[2])]}.", key)


@register_converter(EfficientNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    """torchvision ``efficientnet_b0``: features.N (Conv2dNormActivation / MBConv.block), classifier.1."""
    return {_torchvision_key(key): value for key, value in state_dict.items()}


@register_model(params=5_288_548, macs=0.39, top1_err=22.9, top5_err=6.7, eval_note="single crop 224",
                **PAPER)
def efficientnet_b0(**kwargs) -> EfficientNet:
    return EfficientNet(**kwargs)
