"""Inception-v3: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016, arXiv 1512.00567.

The network of Table 1 as released (the TF-slim checkpoint that torchvision
and timm port, and that the 23,834,568 parameters count). Its modules are the
paper's figures:

- ``InceptionA`` (Figure 5, 35 x 35 grid): the 5x5 factorised into two 3x3
  (the release keeps one 5x5 column beside them, ``branch5x5_*``).
- ``InceptionB`` (Figure 10): grid reduction 35 -> 17, stride-2 convolutions
  and a max-pool side by side, so the grid shrinks without a representational
  bottleneck (Section 5).
- ``InceptionC`` (Figure 6, 17 x 17): n x n factorised into 1 x n then n x 1, n = 7.
- ``InceptionD`` (grid reduction 17 -> 8, Figure 10 with 1 x 7 / 7 x 1 factorisation).
- ``InceptionE`` (Figure 7, 8 x 8): expanded filter banks, 1 x 3 and 3 x 1 side by side.
- ``InceptionAux`` (Figure 8): the auxiliary classifier on the last 17 x 17
  map; its 5x5 convolution with batch norm is the batch-normalised fully
  connected layer of Table 3's "BN-auxiliary", part of the paper's best figure (21.2 / 5.6 %).

Where the release and Table 1 differ (the release's is what the weights and the
parameter count need): after the first max-pool the table lists three 3x3
convolutions (to 80, to 192 with stride 2, to 288) where the release has a 1x1
to 80, a 3x3 to 192 and a 3x3/2 max-pool, so that the first Figure 5 module
takes 192 channels; the table lists 5 x Figure 6, the release has 4
(``Mixed_6b-e``); the grid reductions are modules of their own (``Mixed_6a``, ``Mixed_7a``).

Names follow the release (``Conv2d_1a_3x3`` ... ``Mixed_7c``, ``AuxLogits``) as
torchvision and timm keep them, so their weights load by name. The released
weights take inputs normalised to [-1, 1] (mean = std = 0.5, ``default_cfg``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from ..layers import ConvBnAct, SelectAdaptivePool2d
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier

PAPER = dict(paper="Rethinking the Inception Architecture for Computer Vision", arxiv="1512.00567",
             input_size=299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# Table 3, last row (Inception-v3: RMSProp, label smoothing, factorised 7x7, BN-auxiliary).
RESULT = dict(top1_err=21.2, top5_err=5.6, eval_note="single crop 299, ImageNet val")

ConvBlock = Callable[..., nn.Module]


class InceptionV3Outputs(NamedTuple):
    """Training-mode output with the auxiliary head: main logits, then the head on ``Mixed_6e``."""

    logits: Tensor
    aux: Tensor


class InceptionA(nn.Module):
    """Figure 5 (35 x 35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1 (``pool_features``)."""

    def __init__(self, in_channels: int, pool_features: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.branch1x1 = conv_block(in_channels, 64, 1)
        self.branch5x5_1 = conv_block(in_channels, 48, 1)
        self.branch5x5_2 = conv_block(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, 1)
        self.branch3x3dbl_2 = conv_block(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, 3, padding=1)
        # The port averages over the zero padding too (TF's SAME pooling would not); the weights expect it.
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5x5 = self.branch5x5_2(self.branch5x5_1(x))
        b3x3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5x5, b3x3, self.branch_pool(self.pool(x))], 1)


class InceptionB(nn.Module):
    """Figure 10, grid reduction 35 -> 17: 3x3/2 (384) | 1x1-3x3-3x3/2 (96) | 3x3/2 max-pool."""

    def __init__(self, in_channels: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.branch3x3 = conv_block(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, 1)
        self.branch3x3dbl_2 = conv_block(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3x3dbl, self.pool(x)], 1)


class InceptionC(nn.Module):
    """Figure 6 (17 x 17), n = 7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg-pool-1x1, 192 each.

    ``channels_7x7`` is the width inside the factorised columns (128, 160, 160, 192 in ``Mixed_6b-e``).
    """

    def __init__(self, in_channels: int, channels_7x7: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = conv_block(in_channels, 192, 1)
        self.branch7x7_1 = conv_block(in_channels, c7, 1)
        self.branch7x7_2 = conv_block(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = conv_block(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = conv_block(in_channels, c7, 1)
        self.branch7x7dbl_2 = conv_block(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv_block(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv_block(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv_block(c7, 192, (1, 7), padding=(0, 3))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7x7dbl = conv(b7x7dbl)
        return torch.cat([self.branch1x1(x), b7x7, b7x7dbl, self.branch_pool(self.pool(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 (320) | 1x1-1x7-7x1-3x3/2 (192) | 3x3/2 max-pool."""

    def __init__(self, in_channels: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.branch3x3_1 = conv_block(in_channels, 192, 1)
        self.branch3x3_2 = conv_block(192, 320, 3, stride=2)
        self.branch7x7x3_1 = conv_block(in_channels, 192, 1)
        self.branch7x7x3_2 = conv_block(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_block(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_block(192, 192, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3x3 = self.branch3x3_2(self.branch3x3_1(x))
        b7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7x7x3 = conv(b7x7x3)
        return torch.cat([b3x3, b7x7x3, self.pool(x)], 1)


class InceptionE(nn.Module):
    """Figure 7 (8 x 8), expanded filter banks: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | avg-pool-1x1.

    The 1x3 and 3x1 of a column both read the same input and are concatenated
    (the figure's split), instead of following each other as in Figure 6.
    """

    def __init__(self, in_channels: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.branch1x1 = conv_block(in_channels, 320, 1)
        self.branch3x3_1 = conv_block(in_channels, 384, 1)
        self.branch3x3_2a = conv_block(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = conv_block(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = conv_block(in_channels, 448, 1)
        self.branch3x3dbl_2 = conv_block(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = conv_block(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv_block(384, 384, (3, 1), padding=(1, 0))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3x3 = self.branch3x3_1(x)
        b3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3x3), self.branch3x3_2b(b3x3),
            self.branch3x3dbl_3a(b3x3dbl), self.branch3x3dbl_3b(b3x3dbl),
            self.branch_pool(self.pool(x)),
        ], 1)


class InceptionAux(nn.Module):
    """Figure 8: 5x5/3 avg-pool, 1x1 conv 128, 5x5 conv 768 (the batch-normalised "fully connected" layer), FC.

    The 17 x 17 map pools to 5 x 5, which the 5x5 conv reduces to 1 x 1; a
    larger input gives a larger map, averaged to 1 x 1 before the FC.
    """

    def __init__(self, in_channels: int, num_classes: int, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = conv_block(in_channels, 128, 1)
        self.conv1 = conv_block(128, 768, 5)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < 17:
            raise ValueError(f"the auxiliary head needs a 17x17 map or larger (a 299x299 input), got "
                             f"{tuple(x.shape[-2:])}; build with aux_logits=False or feed larger images")
        x = self.conv1(self.conv0(self.pool(x)))  # N x 768 x 1 x 1 at 299
        return self.fc(self.global_pool(x).flatten(1))


class InceptionV3(ImageClassifier):
    """Inception-v3 (Table 1, released layout): stem, 3 x Fig. 5, reduction, 4 x Fig. 6, reduction, 2 x Fig. 7.

    Auxiliary head: with ``aux_logits=True`` the network has the Figure 8
    classifier on ``Mixed_6e``. It runs only in training mode, where
    ``forward`` returns ``InceptionV3Outputs(logits, aux)`` and the trainer adds
    ``aux_weight`` x its loss (``cnnzoo.engine``); in eval mode, or with
    ``aux_logits=False`` (the default), ``forward`` returns the logits only, as GoogLeNet's.

    Args:
        aux_logits: build the auxiliary classifier (see above; 3,326,696 more parameters).
        drop_rate: dropout before the classifier (TF-slim's release trains with keep probability 0.8).
        conv_block: conv-BN-ReLU builder (BN eps 1e-3, as in the release).
    """

    def __init__(self, aux_logits: bool = False, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, conv_block: ConvBlock = ConvBnAct):
        super().__init__()
        self.aux_logits = aux_logits
        # Stem (Table 1's first seven rows; "V" = no padding in the paper's figures).
        self.Conv2d_1a_3x3 = conv_block(in_chans, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = conv_block(32, 32, 3)
        self.Conv2d_2b_3x3 = conv_block(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = conv_block(64, 80, 1)
        self.Conv2d_4a_3x3 = conv_block(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        # 35 x 35: three Figure 5 modules.
        self.Mixed_5b = InceptionA(192, pool_features=32, conv_block=conv_block)
        self.Mixed_5c = InceptionA(256, pool_features=64, conv_block=conv_block)
        self.Mixed_5d = InceptionA(288, pool_features=64, conv_block=conv_block)
        self.Mixed_6a = InceptionB(288, conv_block)
        # 17 x 17: four Figure 6 modules.
        self.Mixed_6b = InceptionC(768, channels_7x7=128, conv_block=conv_block)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, conv_block=conv_block)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, conv_block=conv_block)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, conv_block=conv_block)
        if aux_logits:
            self.AuxLogits = InceptionAux(768, num_classes, conv_block)
        self.Mixed_7a = InceptionD(768, conv_block)
        # 8 x 8: two Figure 7 modules.
        self.Mixed_7b = InceptionE(1280, conv_block)
        self.Mixed_7c = InceptionE(2048, conv_block)

        self.num_features = 2048
        self.global_pool = SelectAdaptivePool2d("avg")  # Table 1's 8x8 pool at 299; any size works
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.feature_info = [
            dict(num_chs=64, reduction=2, module="Conv2d_2b_3x3"),
            dict(num_chs=192, reduction=4, module="Conv2d_4a_3x3"),
            dict(num_chs=288, reduction=8, module="Mixed_5d"),
            dict(num_chs=768, reduction=16, module="Mixed_6e"),
            dict(num_chs=2048, reduction=32, module="Mixed_7c"),
        ]

        # TF-slim's initialisation: truncated normal, std 0.1; 0.01 and 0.001 in the auxiliary head.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if aux_logits:
            nn.init.trunc_normal_(self.AuxLogits.conv1.conv.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.trunc_normal_(self.AuxLogits.fc.weight, std=0.001, a=-0.002, b=0.002)

    def _trunk(self, x: Tensor, aux: bool) -> tuple[Tensor, Tensor | None]:
        """The feature map, and the auxiliary logits when ``aux`` (else None)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # N x 64 x 147 x 147 at 299
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))  # N x 192 x 71 x 71
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(self.maxpool2(x))))  # N x 288 x 35 x 35
        x = self.Mixed_6a(x)  # N x 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # N x 768 x 17 x 17
        aux_logits = self.AuxLogits(x) if aux else None
        x = self.Mixed_7a(x)  # N x 1280 x 8 x 8
        return self.Mixed_7c(self.Mixed_7b(x)), aux_logits  # N x 2048 x 8 x 8

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, aux=False)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x))  # N x 2048
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor | InceptionV3Outputs:
        """Logits; in training mode with ``aux_logits``, ``InceptionV3Outputs(logits, aux)``."""
        aux = self.aux_logits and self.training
        x, aux_logits = self._trunk(x, aux)
        logits = self.forward_head(x)
        return InceptionV3Outputs(logits, aux_logits) if aux else logits


@register_converter(InceptionV3, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    return dict(state_dict)  # same names: Conv2d_1a_3x3 ... Mixed_7c (branch*), AuxLogits (conv0, conv1, fc), fc


# The reference's 5.7 G is the released layout's conv + linear MACs at 299 (5.713 G) to one decimal;
# the paper's abstract rounds it to "5 billion multiply-adds per inference".
@register_model(**PAPER, **RESULT, params=23_834_568, macs=5.7)
def inception_v3(**kwargs) -> InceptionV3:
    """Inception-v3 as released (``aux_logits=True`` adds the Figure 8 head: 27,161,264 parameters)."""
    return InceptionV3(**kwargs)
