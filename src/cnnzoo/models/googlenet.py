"""GoogLeNet: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, arXiv 1409.4842.

Two layouts of the same network (Table 1):

- ``googlenet``, the paper's: convolutions with biases and no batch norm, local
  response normalisation in the stem, a true 5x5 convolution in the fourth
  column of every Inception module, dropout 0.4 before the classifier.
- ``googlenet_bn``, torchvision's released layout, which its weights need:
  batch norm after every convolution (no biases), no LRN, a 3x3 convolution in
  the "5x5" column, a 2x2 max-pool before inception 5a and auxiliary heads that
  pool adaptively to 4x4.

Auxiliary classifiers (``aux_logits=True``, Section 5) sit after inception 4a
and 4d and only run in training mode; see ``GoogLeNet``. ``inception="naive"``
(or ``googlenet_naive``) builds every module as Fig. 2(a), without the 1x1
reductions, to measure what they save: ``cnnzoo info googlenet --compare googlenet_naive``.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Callable, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvBnAct, SelectAdaptivePool2d
from ..registry import IMAGENET_MEAN, IMAGENET_STD, register_model
from ..weights import register_converter
from .base import ImageClassifier

PAPER = dict(paper="Going Deeper with Convolutions", arxiv="1409.4842")
RESULT = dict(top5_err=10.07, eval_note="1 model, 1 crop")  # Table 5, the paper's network only


class Row(NamedTuple):
    """One row of Table 1: the widths of an Inception module's columns."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int


# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, per Inception module.
TABLE_1 = {
    "3a": Row(64, 96, 128, 16, 32, 32),
    "3b": Row(128, 128, 192, 32, 96, 64),
    "4a": Row(192, 96, 208, 16, 48, 64),
    "4b": Row(160, 112, 224, 24, 64, 64),
    "4c": Row(128, 128, 256, 24, 64, 64),
    "4d": Row(112, 144, 288, 32, 64, 64),
    "4e": Row(256, 160, 320, 32, 128, 128),
    "5a": Row(256, 160, 320, 32, 128, 128),
    "5b": Row(384, 192, 384, 48, 128, 128),
}

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux1", "aux2"])
GoogLeNetOutputs.__doc__ = "Training-mode output with auxiliary heads: main logits, then the heads on 4a and 4d."


class ConvReLU(nn.Module):
    """Convolution with bias, then ReLU: the unit of the paper's (pre-batch-norm) network."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class Inception(nn.Module):
    """Fig. 2(b), the module with dimension reductions: four columns concatenated along channels.

    The arguments are Table 1's columns: a 1x1 convolution (``ch1x1``); a 1x1
    reduction to ``ch3x3red`` then a 3x3 (``ch3x3``); a 1x1 reduction to
    ``ch5x5red`` then a ``kernel_5x5`` convolution (``ch5x5``); a 3x3/1 max-pool
    then a 1x1 projection (``pool_proj``).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, conv_block: Callable[..., nn.Module] = ConvReLU, kernel_5x5: int = 5):
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(conv_block(in_channels, ch3x3red, kernel_size=1),
                                     conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(conv_block(in_channels, ch5x5red, kernel_size=1),
                                     conv_block(ch5x5red, ch5x5, kernel_size=kernel_5x5, padding=kernel_5x5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     conv_block(in_channels, pool_proj, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionNaive(nn.Module):
    """Fig. 2(a), the naive module: 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool, with no 1x1 reductions.

    The pooling column passes all ``in_channels`` through, so the output
    (``in_channels + ch1x1 + ch3x3 + ch5x5``) widens from module to module:
    the "computational blow up" that Section 4 introduces the reductions against.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int,
                 conv_block: Callable[..., nn.Module] = ConvReLU, kernel_5x5: int = 5):
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = conv_block(in_channels, ch3x3, kernel_size=3, padding=1)
        self.branch3 = conv_block(in_channels, ch5x5, kernel_size=kernel_5x5, padding=kernel_5x5 // 2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.out_channels = in_channels + ch1x1 + ch3x3 + ch5x5

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (Section 5): avg-pool, 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout, FC.

    The pool is the paper's 5x5/3 average pool (4x4 from the 14x14 map of a
    224x224 input) or, with ``adaptive_pool``, torchvision's adaptive pool to 4x4 (any input size).
    """

    def __init__(self, in_channels: int, num_classes: int, conv_block: Callable[..., nn.Module] = ConvReLU,
                 adaptive_pool: bool = False, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4) if adaptive_pool else nn.AvgPool2d(5, stride=3, ceil_mode=True)
        self.conv = conv_block(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)  # N x 512 (4a) or 528 (4d) x 4 x 4
        if x.shape[-2:] != (4, 4):
            raise ValueError(f"auxiliary heads need a 4x4 map after their pool, got {tuple(x.shape[-2:])}: "
                             "the paper's 5x5/3 pool expects a 224x224 input (use layout='torchvision' for any size)")
        x = self.conv(x).flatten(1)  # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        return self.fc2(x)


class GoogLeNet(ImageClassifier):
    """GoogLeNet (Table 1): stem, nine Inception modules, global average pool, dropout, FC.

    Auxiliary heads: with ``aux_logits=True`` the network has two more
    classifiers, after inception 4a and 4d. They run only in training mode,
    where ``forward`` returns ``GoogLeNetOutputs(logits, aux1, aux2)``; the
    training loss is then ``loss(logits) + 0.3 * (loss(aux1) + loss(aux2))``
    (Section 5). In eval mode, or with ``aux_logits=False`` (the default),
    ``forward`` returns the main logits only, and the heads are never computed.

    Args:
        layout: ``"paper"`` (the Caffe release of the paper's network) or
            ``"torchvision"`` (the layout torchvision's weights need; its
            differences are commented where they are built).
        inception: ``"reduction"`` (Fig. 2b, the network) or ``"naive"`` (Fig. 2a).
        aux_logits: build the auxiliary classifiers (see above).
        dropout: before the classifier; None takes the layout's (paper 0.4, torchvision 0.2).
        dropout_aux: in the auxiliary heads (0.7 in both).
        transform_input: torchvision's option for its released weights, which
            were trained on inputs normalised to [-1, 1]: with it the model takes
            ImageNet-normalised input (``default_cfg.mean/std``) and re-normalises
            it to (x - 0.5) / 0.5 itself. torchvision turns it on when it loads
            those weights; build with ``transform_input=True`` to load them here.
    """

    def __init__(
        self,
        layout: Literal["paper", "torchvision"] = "paper",
        inception: Literal["reduction", "naive"] = "reduction",
        aux_logits: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float | None = None,
        dropout_aux: float = 0.7,
        transform_input: bool = False,
    ):
        super().__init__()
        if layout not in ("paper", "torchvision"):
            raise ValueError(f"unknown GoogLeNet layout {layout!r}: use 'paper' or 'torchvision'")
        if inception not in ("reduction", "naive"):
            raise ValueError(f"unknown inception {inception!r}: use 'reduction' (Fig. 2b) or 'naive' (Fig. 2a)")
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB input; it needs in_chans=3, got {in_chans}")
        paper = layout == "paper"
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        conv_block = ConvReLU if paper else ConvBnAct
        # torchvision's "5x5" column is a 3x3: its weights were ported with that (documented) bug.
        kernel_5x5 = 5 if paper else 3

        # Every pool rounds its output size up, as Caffe's do (224 -> 112 -> 56 -> 28 -> 14 -> 7).
        self.conv1 = conv_block(in_chans, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # LRN as in the release (size 5, alpha 1e-4, beta 0.75, k 1). Caffe divides alpha by the window
        # size, as torch.nn.LocalResponseNorm does, so the release's values carry over unchanged.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else nn.Identity()
        self.conv2 = conv_block(64, 64, kernel_size=1)
        self.conv3 = conv_block(64, 192, kernel_size=3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = 192
        for name, row in TABLE_1.items():
            if inception == "naive":
                module = InceptionNaive(channels, row.ch1x1, row.ch3x3, row.ch5x5, conv_block, kernel_5x5)
            else:
                module = Inception(channels, *row, conv_block=conv_block, kernel_5x5=kernel_5x5)
            self.add_module(f"inception{name}", module)
            channels = module.out_channels
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # torchvision pools 2x2/2 before 5a where the paper has 3x3/2: same 7x7 output, other values.
        self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)

        if aux_logits:
            # torchvision pools adaptively to 4x4 (the paper's 5x5/3 pool fixes the input at 224x224).
            aux = dict(conv_block=conv_block, adaptive_pool=not paper, dropout=dropout_aux)
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, **aux)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, **aux)

        self.feature_info = [
            dict(num_chs=64, reduction=2, module="conv1"), dict(num_chs=192, reduction=4, module="lrn2"),
            dict(num_chs=self.inception3b.out_channels, reduction=8, module="inception3b"),
            dict(num_chs=self.inception4e.out_channels, reduction=16, module="inception4e"),
            dict(num_chs=channels, reduction=32, module="inception5b"),
        ]
        self.num_features = channels
        # Global average pool: the paper's 7x7/1 average pool at 224, and any other size works.
        self.global_pool = SelectAdaptivePool2d("avg")
        self.dropout = nn.Dropout(dropout if dropout is not None else 0.4 if paper else 0.2)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if paper:  # Caffe's "xavier" filler (uniform, variance 1 / fan_in), conv biases 0.2: the BVLC release
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                    nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)
                else:  # torchvision's
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-2, b=2)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def _transform_input(self, x: Tensor) -> Tensor:
        """ImageNet-normalised input -> (pixel - 0.5) / 0.5, what torchvision's released weights expect."""
        if not self.transform_input:
            return x
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _trunk(self, x: Tensor, aux: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The feature map, and the auxiliary logits when ``aux`` (else None)."""
        x = self._transform_input(x)
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # N x 64 x 56 x 56
        x = self.lrn2(self.conv3(self.conv2(x)))  # N x 192 x 56 x 56
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.inception3b(self.inception3a(x))  # N x 480 x 28 x 28
        x = self.inception4a(self.maxpool3(x))  # N x 512 x 14 x 14
        aux1 = self.aux1(x) if aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if aux else None
        x = self.maxpool4(self.inception4e(x))  # N x 832 x 7 x 7
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7
        return x, aux1, aux2

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, aux=False)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x))  # N x 1024
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        """Logits; in training mode with ``aux_logits``, ``GoogLeNetOutputs(logits, aux1, aux2)``."""
        aux = self.aux_logits and self.training
        x, aux1, aux2 = self._trunk(x, aux)
        logits = self.forward_head(x)
        return GoogLeNetOutputs(logits, aux1, aux2) if aux else logits


@register_converter(GoogLeNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    return dict(state_dict)  # same names: conv1-3, inception3a-5b (branch1-4), aux1/aux2 (conv, fc1, fc2), fc


@register_model(**PAPER, **RESULT, params=6_998_552, macs=1.583)
def googlenet(**kwargs) -> GoogLeNet:
    """The paper's network (``aux_logits=True`` adds the two auxiliary heads for training)."""
    return GoogLeNet("paper", **kwargs)


@register_model(**PAPER)
def googlenet_naive(**kwargs) -> GoogLeNet:
    """The paper's network built from naive Inception modules (Fig. 2a): what the 1x1 reductions avoid."""
    return GoogLeNet("paper", inception="naive", **kwargs)


@register_model(**PAPER, params=6_624_904, macs=1.498)
def googlenet_bn(**kwargs) -> GoogLeNet:
    """torchvision's layout: batch norm, no biases, 3x3 in the "5x5" column; loads torchvision's weights."""
    return GoogLeNet("torchvision", **kwargs)
