"""Inception-v4: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017, arXiv 1602.07261.

Figure 9's schema, each part a figure of the paper:

- ``Stem`` (Figure 3): 299 x 299 x 3 -> 35 x 35 x 384, three times a filter
  concatenation of a convolution and a pool (or two conv columns) side by side.
- ``inception_a`` (Figure 4, 4 x at 35 x 35), ``inception_b`` (Figure 5,
  7 x at 17 x 17), ``inception_c`` (Figure 6, 3 x at 8 x 8).
- ``reduction_a`` (Figure 7, with Table 1's k, l, m, n) and ``reduction_b``
  (Figure 8) between the grids.
- Average pooling, dropout (keep 0.8), softmax.

The convolutions follow the released TF-slim checkpoint (ported by timm, whose
weights load with ``import_weights(..., source="timm")``); "V" in the
figures, a valid (unpadded) convolution, is ``padding=0`` here. The released
weights take inputs normalised to [-1, 1] (mean = std = 0.5, ``default_cfg``).
Inception-ResNet-v2 of the same paper is ``cnnzoo.models.inception_resnet``.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from ..layers import Concat, ConvBnAct
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier, he_init_

PAPER = dict(paper="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
             arxiv="1602.07261", input_size=299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RESULT = dict(top1_err=20.0, top5_err=5.0, eval_note="single crop, ImageNet val")  # Table 2

ConvBlock = Callable[..., nn.Module]


class ReductionFilters(NamedTuple):
    """Table 1: the filter counts of Reduction-A (Figure 7) in each network of the paper."""

    k: int  # 1x1 of the three-conv column
    l: int  # noqa: E741 (the paper's name) its 3x3
    m: int  # its 3x3/2
    n: int  # the single 3x3/2 column


TABLE_1 = {
    "inception_v4": ReductionFilters(192, 224, 256, 384),
    "inception_resnet_v1": ReductionFilters(192, 192, 256, 384),
    "inception_resnet_v2": ReductionFilters(256, 256, 384, 384),
}

# Figure 9: Inception modules per grid.
DEPTHS = {"inception_a": 4, "inception_b": 7, "inception_c": 3}


def avg_pool_3x3() -> nn.AvgPool2d:
    """The 3x3/1 average pool of the Inception columns (padding not counted in the mean, TF's SAME pooling)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Stem(nn.Sequential):
    """Figure 3: 3x3/2 32 V, 3x3 32 V, 3x3 64; then three filter concatenations (73, 71, 35 grids at 299).

    ``mixed_3a``: 3x3/2 max-pool V | 3x3/2 conv 96 V (64 -> 160 channels).
    ``mixed_4a``: 1x1 64, 3x3 96 V | 1x1 64, 1x7 64, 7x1 64, 3x3 96 V (-> 192; the release's order).
    ``mixed_5a``: 3x3/2 conv 192 V | 3x3/2 max-pool V (-> 384).
    """

    def __init__(self, in_chans: int = 3, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.conv2d_1a = conv_block(in_chans, 32, 3, stride=2)  # 149 x 149 at 299
        self.conv2d_2a = conv_block(32, 32, 3)  # 147 x 147
        self.conv2d_2b = conv_block(32, 64, 3, padding=1)  # 147 x 147
        self.mixed_3a = Concat(maxpool=nn.MaxPool2d(3, stride=2), conv=conv_block(64, 96, 3, stride=2))  # 73 x 73
        self.mixed_4a = Concat(
            branch0=nn.Sequential(conv_block(160, 64, 1), conv_block(64, 96, 3)),
            branch1=nn.Sequential(conv_block(160, 64, 1), conv_block(64, 64, (1, 7), padding=(0, 3)),
                                  conv_block(64, 64, (7, 1), padding=(3, 0)), conv_block(64, 96, 3)),
        )  # 71 x 71
        self.mixed_5a = Concat(conv=conv_block(192, 192, 3, stride=2), maxpool=nn.MaxPool2d(3, stride=2))  # 35 x 35


def inception_a(conv_block: ConvBlock = ConvBnAct) -> Concat:
    """Figure 4 (35 x 35, 384 channels): avg-pool, 1x1 96 | 1x1 96 | 1x1 64, 3x3 96 | 1x1 64, 3x3 96, 3x3 96."""
    return Concat(
        branch0=conv_block(384, 96, 1),
        branch1=nn.Sequential(conv_block(384, 64, 1), conv_block(64, 96, 3, padding=1)),
        branch2=nn.Sequential(conv_block(384, 64, 1), conv_block(64, 96, 3, padding=1),
                              conv_block(96, 96, 3, padding=1)),
        branch3=nn.Sequential(avg_pool_3x3(), conv_block(384, 96, 1)),
    )


def reduction_a(in_chs: int, filters: ReductionFilters, conv_block: ConvBlock = ConvBnAct) -> Concat:
    """Figure 7, 35 -> 17: 3x3/2 n V | 1x1 k, 3x3 l, 3x3/2 m V | 3x3/2 max-pool V (-> n + m + in_chs)."""
    k, l, m, n = filters  # noqa: E741
    return Concat(
        branch0=conv_block(in_chs, n, 3, stride=2),
        branch1=nn.Sequential(conv_block(in_chs, k, 1), conv_block(k, l, 3, padding=1),
                              conv_block(l, m, 3, stride=2)),
        branch2=nn.MaxPool2d(3, stride=2),
    )


def inception_b(conv_block: ConvBlock = ConvBnAct) -> Concat:
    """Figure 5 (17 x 17, 1024 channels): 1x1 384 | 1x1 192, 1x7 224, 7x1 256 |
    1x1 192, 7x1 192, 1x7 224, 7x1 224, 1x7 256 | avg-pool, 1x1 128 (the release's order of 1x7 and 7x1)."""
    return Concat(
        branch0=conv_block(1024, 384, 1),
        branch1=nn.Sequential(conv_block(1024, 192, 1), conv_block(192, 224, (1, 7), padding=(0, 3)),
                              conv_block(224, 256, (7, 1), padding=(3, 0))),
        branch2=nn.Sequential(conv_block(1024, 192, 1), conv_block(192, 192, (7, 1), padding=(3, 0)),
                              conv_block(192, 224, (1, 7), padding=(0, 3)),
                              conv_block(224, 224, (7, 1), padding=(3, 0)),
                              conv_block(224, 256, (1, 7), padding=(0, 3))),
        branch3=nn.Sequential(avg_pool_3x3(), conv_block(1024, 128, 1)),
    )


def reduction_b(conv_block: ConvBlock = ConvBnAct) -> Concat:
    """Figure 8, 17 -> 8: 1x1 192, 3x3/2 192 V | 1x1 256, 1x7 256, 7x1 320, 3x3/2 320 V | 3x3/2 max-pool V."""
    return Concat(
        branch0=nn.Sequential(conv_block(1024, 192, 1), conv_block(192, 192, 3, stride=2)),
        branch1=nn.Sequential(conv_block(1024, 256, 1), conv_block(256, 256, (1, 7), padding=(0, 3)),
                              conv_block(256, 320, (7, 1), padding=(3, 0)), conv_block(320, 320, 3, stride=2)),
        branch2=nn.MaxPool2d(3, stride=2),
    )


class InceptionC(nn.Module):
    """Figure 6 (8 x 8, 1536 channels): 1x1 256 | 1x1 384, then 1x3 256 and 3x1 256 side by side |
    1x1 384, 3x1 448, 1x3 512, then 1x3 256 and 3x1 256 side by side | avg-pool, 1x1 256.

    The convolutions in the release's order and names, which its weights need.
    """

    def __init__(self, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.branch0 = conv_block(1536, 256, 1)
        self.branch1_0 = conv_block(1536, 384, 1)
        self.branch1_1a = conv_block(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = conv_block(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = conv_block(1536, 384, 1)
        self.branch2_1 = conv_block(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = conv_block(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = conv_block(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = conv_block(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(avg_pool_3x3(), conv_block(1536, 256, 1))

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat([self.branch0(x), self.branch1_1a(x1), self.branch1_1b(x1),
                          self.branch2_3a(x2), self.branch2_3b(x2), self.branch3(x)], 1)


class InceptionV4(ImageClassifier):
    """Inception-v4 (Figure 9): stem, 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B,
    3 x Inception-C, average pool, dropout, FC.

    Args:
        drop_rate: dropout before the classifier (Figure 9: keep 0.8).
        conv_block: conv-BN-ReLU builder (BN eps 1e-3 as in TF-slim).
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.stem = Stem(in_chans, conv_block)  # N x 384 x 35 x 35 at 299
        self.inception_a = nn.Sequential(*(inception_a(conv_block) for _ in range(DEPTHS["inception_a"])))
        self.reduction_a = reduction_a(384, TABLE_1["inception_v4"], conv_block)  # 384 + 256 + 384 = 1024
        self.inception_b = nn.Sequential(*(inception_b(conv_block) for _ in range(DEPTHS["inception_b"])))
        self.reduction_b = reduction_b(conv_block)  # 192 + 320 + 1024 = 1536
        self.inception_c = nn.Sequential(*(InceptionC(conv_block) for _ in range(DEPTHS["inception_c"])))
        self.num_features = 1536
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # Figure 9's 8x8 average pool at 299; any size works
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.feature_info = [
            dict(num_chs=64, reduction=2, module="stem.conv2d_2b"),
            dict(num_chs=160, reduction=4, module="stem.mixed_3a"),
            dict(num_chs=384, reduction=8, module="inception_a"),
            dict(num_chs=1024, reduction=16, module="inception_b"),
            dict(num_chs=1536, reduction=32, module="inception_c"),
        ]
        he_init_(self)  # TF-slim's variance-scaling initialiser is He et al.'s

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.inception_a(self.stem(x))  # N x 384 x 35 x 35 at 299
        x = self.inception_b(self.reduction_a(x))  # N x 1024 x 17 x 17
        return self.inception_c(self.reduction_b(x))  # N x 1536 x 8 x 8

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))  # N x 1536
        return x if pre_logits else self.fc(x)


# timm's ``features`` Sequential, index by index: the stem's six parts, then the grids' modules.
_TIMM_FEATURES = (
    [f"stem.{n}" for n in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "mixed_3a", "mixed_4a", "mixed_5a")]
    + [f"inception_a.{i}" for i in range(DEPTHS["inception_a"])] + ["reduction_a"]
    + [f"inception_b.{i}" for i in range(DEPTHS["inception_b"])] + ["reduction_b"]
    + [f"inception_c.{i}" for i in range(DEPTHS["inception_c"])]
)


@register_converter(InceptionV4, "timm")
def _from_timm(state_dict: dict) -> dict:
    """timm ``inception_v4``: ``features.N`` -> our stem and grid names, ``last_linear`` -> ``fc``."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^features\.(\d+)\.", lambda m: _TIMM_FEATURES[int(m[1])] + ".", key)
        out[re.sub(r"^last_linear\.", "fc.", key)] = value
    return out


# No MACs reference: the paper gives none (the released layout counts 12.3 G at 299, tests/test_inception_v4.py).
@register_model(**PAPER, **RESULT, params=42_679_816)
def inception_v4(**kwargs) -> InceptionV4:
    return InceptionV4(**kwargs)
