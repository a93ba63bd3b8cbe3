"""PyramidNet: Han, Kim, Kim, "Deep Pyramidal Residual Networks", CVPR 2017, arXiv 1610.02915.

A residual network whose width grows a little at every block instead of
doubling where the map halves (Fig. 2a, additive PyramidNet): block k of the
N blocks has D_k = floor(D_0 + alpha * k / N) channels (Eq. 2), so the last
block is alpha wider than the stem. The pyramidal residual unit (Fig. 6d) is BN -> conv -> BN -> ReLU ->
conv -> BN, with no ReLU on the block's input or after the addition; the
shortcut is the identity, zero-padded to the new width, through a
2x2 average pool where the map halves. After the last block, BN, ReLU,
global average pool, FC.

CIFAR networks: a 3x3 conv (16 filters) and BN, three stages of n blocks
(depth 6n + 2 with basic blocks, 9n + 2 with bottlenecks) at 32, 16, 8 px.
ImageNet networks: ResNet's 7x7/2 stem and max-pool, then the bottleneck
stages of ResNet-101/152/200 starting from 64 channels (the authors' release).
A bottleneck unit (Fig. 6d with 1x1 reduce and expand) outputs 4 D_k channels.

Residual branches can be dropped with stochastic depth (Huang et al. 2016,
arXiv 1603.09382), see ``cnnzoo.layers.drop``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import DropPathSpec, StochasticDepth, conv1x1, conv3x3
from ..registry import CIFAR10_MEAN, CIFAR10_STD, register_model
from .base import ImageClassifier, he_init_

PAPER = dict(paper="Deep Pyramidal Residual Networks", arxiv="1610.02915")
CIFAR = dict(PAPER, input_size=(3, 32, 32), num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)

# Blocks per stage of the ImageNet networks (the authors' release: ResNet's depths, 200 as in ResNet v2).
IMAGENET_STAGES = {101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}

# CIFAR results (Table 4): (depth, alpha, bottleneck) -> (params in M, CIFAR-10 error %, CIFAR-100 error %).
CIFAR_RESULTS = {(110, 48, False): (1.7, 4.58, 23.12)}
# ImageNet, single crop 224 (the authors' release, PyramidNet-caffe README): (depth, alpha) ->
# (params in M, output feature dimension, top-1 error %, top-5 error %). alpha 450 adds dropout 0.5.
# The feature dimensions are 4 (64 + alpha) here too; the parameter counts are not all reproduced:
# 62.15 and 116.49 M for the 200-layer ones, but 24.85 and 27.34 M for 101 / 250 and 152 / 200.
IMAGENET_RESULTS = {(101, 250): (23.5, 1256, 23.24, 6.59), (152, 200): (26.0, 1056, 22.44, 6.14),
                    (200, 300): (62.1, 1456, 20.41, 5.16), (200, 450): (116.4, 2056, 20.27, 5.49)}


def pyramid_widths(start: int, alpha: float, num_blocks: int) -> list[int]:
    """D_k = floor(start + alpha * k / N) for k = 1..N: Eq. 2, with the floor the paper writes.

    The authors' code rounds to the nearest integer instead (1,772,706 parameters for PyramidNet-110,
    alpha 48, against Table 4's 1.7 M); the floor gives 1,739,730 and also reproduces Table 4's counts
    of the bottleneck networks 164 / 48, 200 / 240, 236 / 220 and 272 / 200 to 0.1 M. It does not
    explain 110 / 270 and 164 / 270 (28.5 and 27.2 M here against 28.3 and 27.0 M), whose widths
    are whole numbers under either rule.
    """
    return [int(start + alpha * k / num_blocks) for k in range(1, num_blocks + 1)]


def pad_shortcut(x: Tensor, out_chs: int, stride: int) -> Tensor:
    """The identity shortcut: 2x2-average-pooled where the map halves, zero-padded to ``out_chs`` channels."""
    if stride != 1:
        x = F.avg_pool2d(x, 2, stride, ceil_mode=True)
    return F.pad(x, (0, 0, 0, 0, 0, out_chs - x.shape[1]))


class PyramidUnit(nn.Module):
    """A pyramidal residual unit: ``residual(x)`` plus the zero-padded shortcut, gated by stochastic depth."""

    stride: int
    out_chs: int
    drop_path: StochasticDepth

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.drop_path(pad_shortcut(x, self.out_chs, self.stride), self.residual, x)


class PyramidBasicBlock(PyramidUnit):
    """Fig. 6d: BN, 3x3 conv, BN, ReLU, 3x3 conv, BN."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1, drop_path: StochasticDepth | None = None):
        super().__init__()
        self.stride, self.out_chs = stride, planes
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn3 = nn.BatchNorm2d(planes)
        self.drop_path = drop_path or StochasticDepth()

    def residual(self, x: Tensor) -> Tensor:
        out = self.conv1(self.bn1(x))
        return self.bn3(self.conv2(self.act(self.bn2(out))))


class PyramidBottleneck(PyramidUnit):
    """Fig. 6d with a bottleneck: BN, 1x1 conv, BN, ReLU, 3x3 conv, BN, ReLU, 1x1 conv (x4 channels), BN."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, drop_path: StochasticDepth | None = None):
        super().__init__()
        self.stride, self.out_chs = stride, planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv1x1(in_chs, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, self.out_chs)
        self.bn4 = nn.BatchNorm2d(self.out_chs)
        self.drop_path = drop_path or StochasticDepth()

    def residual(self, x: Tensor) -> Tensor:
        out = self.act(self.bn2(self.conv1(self.bn1(x))))
        out = self.act(self.bn3(self.conv2(out)))
        return self.bn4(self.conv3(out))


class PyramidNet(ImageClassifier):
    """An additive PyramidNet.

    Args:
        layers: blocks per stage; the first block of every stage after the first halves the map.
        alpha: widening factor: the last block is ``alpha`` channels (x4 with bottlenecks) wider than the stem.
        bottleneck: bottleneck units (``PyramidBottleneck``) instead of basic ones.
        stem: ``"cifar"`` (3x3 conv, 16 filters, BN) or ``"imagenet"`` (7x7/2 conv, 64 filters, BN, ReLU,
            3x3/2 max-pool).
        drop_rate: dropout before the classifier (0.5 in the authors' alpha = 450 ImageNet model).
        drop_path: stochastic depth over every residual block (``create_model`` builds it from the
            ``drop_path_*`` keywords); see ``cnnzoo.layers.drop``.
    """

    classifier = "fc"

    def __init__(
        self,
        layers: tuple[int, ...],
        alpha: float,
        bottleneck: bool = False,
        stem: str = "cifar",
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path: DropPathSpec | None = None,
    ):
        super().__init__()
        if stem == "cifar":
            chs, reduction = 16, 1
            self.stem = nn.Sequential(conv3x3(in_chans, chs), nn.BatchNorm2d(chs))
            self.feature_info = []
        elif stem == "imagenet":
            chs, reduction = 64, 4
            self.stem = nn.Sequential(nn.Conv2d(in_chans, chs, 7, 2, 3, bias=False), nn.BatchNorm2d(chs),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            self.feature_info = [dict(num_chs=chs, reduction=2, module="stem.2")]
        else:
            raise ValueError(f"unknown PyramidNet stem {stem!r}: use 'cifar' or 'imagenet'")
        block = PyramidBottleneck if bottleneck else PyramidBasicBlock
        num_blocks = sum(layers)
        self.widths = pyramid_widths(chs, alpha, num_blocks)  # D_k of every block, in order
        gates = iter((drop_path or DropPathSpec()).gates(num_blocks, owner=self))
        widths = iter(self.widths)
        stages = []
        for i, depth in enumerate(layers):
            blocks = []
            for b in range(depth):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(block(chs, next(widths), stride, next(gates)))
                chs, reduction = blocks[-1].out_chs, reduction * stride
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(chs)
        self.final_act = nn.ReLU(inplace=True)
        self.feature_info[-1]["module"] = "final_act"  # forward_features ends after the last BN-ReLU

        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chs, num_classes)
        he_init_(self)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # N x 16 x 32 x 32 (CIFAR); N x 64 x 56 x 56 (ImageNet, 224)
        x = self.stages(x)  # N x 64 x 8 x 8 (110, alpha 48); N x 1456 x 7 x 7 (200, alpha 300)
        return self.final_act(self.final_bn(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))
        return x if pre_logits else self.fc(x)


def _cifar_pyramidnet(depth: int, alpha: float, bottleneck: bool = False, **kwargs) -> PyramidNet:
    per_block = 9 if bottleneck else 6
    if (depth - 2) % per_block:
        raise ValueError(f"a CIFAR PyramidNet with {'bottleneck' if bottleneck else 'basic'} blocks has "
                         f"{per_block}n + 2 layers; {depth} is not")
    n = (depth - 2) // per_block
    return PyramidNet((n, n, n), alpha, bottleneck, "cifar", **kwargs)


def _imagenet_pyramidnet(depth: int, alpha: float, **kwargs) -> PyramidNet:
    return PyramidNet(IMAGENET_STAGES[depth], alpha, bottleneck=True, stem="imagenet", **kwargs)


def _imagenet_entry(depth: int, alpha: int) -> dict:
    _, _, top1, top5 = IMAGENET_RESULTS[depth, alpha]
    return dict(PAPER, top1_err=top1, top5_err=top5, eval_note="single crop 224, the authors' release")


# Table 4 prints 1.7 M; the exact count of this layout is registered as well.
@register_model(**CIFAR, params=1_739_730, paper_params=1.7, top1_err=4.58,
                eval_note="CIFAR-10 test error; CIFAR-100: 23.12")
def pyramidnet110_a48(**kwargs) -> PyramidNet:
    return _cifar_pyramidnet(110, 48, **kwargs)


@register_model(params=24_852_508, **_imagenet_entry(101, 250))
def pyramidnet101_a250(**kwargs) -> PyramidNet:
    return _imagenet_pyramidnet(101, 250, **kwargs)


@register_model(params=62_152_030, **_imagenet_entry(200, 300))
def pyramidnet200_a300(**kwargs) -> PyramidNet:
    return _imagenet_pyramidnet(200, 300, **kwargs)
