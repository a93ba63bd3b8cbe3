"""ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, arXiv 1512.03385.

ImageNet networks (Table 1) and the CIFAR-10 networks of Section 4.2 (6n+2
layers, 16-32-64 filters, option-A shortcuts). Every residual branch can be
dropped with stochastic depth (Huang et al. 2016, arXiv 1603.09382), see
``cnnzoo.layers.drop``.

The bottleneck networks come in two layouts, each registered with the error
figures measured on it:

- ``resnet50/101/152``: the released layout that torchvision's weights need
  ("ResNet v1.5", the stride in each bottleneck's 3x3). Its figures are
  torchvision's published single-crop accuracy for its IMAGENET1K_V1 weights;
  the paper never evaluated this layout.
- ``resnet50/101/152_paper``: the paper's layout (the stride in the first 1x1),
  with the paper's 10-crop errors (Table 3) and its Table 1 FLOPs.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import DropPathSpec, SelectAdaptivePool2d, StochasticDepth, conv1x1, conv3x3
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier, he_init_

PAPER = dict(paper="Deep Residual Learning for Image Recognition", arxiv="1512.03385")
CIFAR = dict(PAPER, input_size=(3, 32, 32), num_classes=10,
             mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), eval_note="CIFAR-10 test error")
TEN_CROP = "10-crop, ImageNet val"
# torchvision's ResNet{50,101,152}_Weights.IMAGENET1K_V1 metadata: acc@1 / acc@5 on ImageNet val, one 224 crop
# of the image resized to 256; the errors registered below are 100 - those.
TORCHVISION_V1 = "single crop 224 (resize 256), ImageNet val: torchvision's IMAGENET1K_V1 weights, not the paper"

# Blocks per stage (Table 1) and CIFAR n (Section 4.2: 6n+2 layers).
_IN_STAGE_DS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_CIFAR_N = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}

NormLayer = Callable[[int], nn.Module]


class ZeroPadShortcut(nn.Module):
    """Option A (Section 4.2): parameter-free identity that subsamples with stride 2 and zero-pads new channels."""

    def __init__(self, out_planes: int, stride: int):
        super().__init__()
        self.out_planes, self.stride = out_planes, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - x.shape[1]))


class ResidualBlock(nn.Module):
    """relu(shortcut(x) + residual(x)), the residual branch gated by stochastic depth.

    A dropped block with an identity shortcut returns x itself: in a ResNet every block's input is a
    ReLU's output (the stem's, the previous block's), so relu(x) = x, and x must not be overwritten in
    place. The gradients are the same too: where x = 0 the ReLU that made x stops them anyway.
    """

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.drop_path(shortcut, self.residual, x)
        return x if out is x else self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (Fig. 2 left)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path: StochasticDepth | None = None, stride_in_1x1: bool = False, groups: int = 1,
                 base_width: int = 64, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock has no groups (got groups={groups}, base_width={base_width}); "
                             "grouped (ResNeXt) blocks are bottlenecks: use Bottleneck")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.drop_path = drop_path or StochasticDepth()

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (Fig. 5 right).

    The released layout (torchvision, "ResNet v1.5") strides the 3x3 conv; the
    paper strides the first 1x1, which gives its Table 1 FLOPs (3.8 G for
    ResNet-50 instead of 4.1 G): ``stride_in_1x1=True``.

    ``groups`` and ``base_width`` make it ResNeXt's block (arXiv 1611.05431,
    Fig. 3c): the 3x3 is a grouped convolution of ``groups`` (the cardinality
    C) groups of ``planes * base_width / 64`` channels each (the bottleneck
    width d); see ``cnnzoo.models.resnext``. The defaults are ResNet's.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path: StochasticDepth | None = None, stride_in_1x1: bool = False, groups: int = 1,
                 base_width: int = 64, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        width = planes * base_width // 64 * groups
        self.conv1 = conv1x1(inplanes, width, stride if stride_in_1x1 else 1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path or StochasticDepth()

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(ImageClassifier):
    """A ResNet: stem, stages of residual blocks (widths doubling as the map halves), global pool, FC.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage.
        widths: ``planes`` of each stage (block output is ``planes * block.expansion``).
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool) or ``"cifar"`` (3x3 conv, no pool).
        shortcut: ``"B"`` (1x1 projection where the shape changes) or ``"A"`` (zero-padded identity).
        stride_in_1x1: stride the bottleneck's first 1x1 (the paper) instead of its 3x3 (released weights).
        groups, base_width: ResNeXt's cardinality and bottleneck width of each ``Bottleneck`` (1 and 64: ResNet).
        norm_layer: builds every normalisation layer from its channel count (``nn.BatchNorm2d``).
        zero_init_last: start every residual branch at zero (its last batch norm's scale 0; Goyal et al.,
            arXiv 1706.02677) instead of the paper's He init throughout.
        drop_path: stochastic depth over every residual block (``create_model`` builds it from the
            ``drop_path_*`` keywords); see ``cnnzoo.layers.drop``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: Literal["imagenet", "cifar"] = "imagenet",
        shortcut: Literal["A", "B"] = "B",
        stride_in_1x1: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_path: DropPathSpec | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        groups: int = 1,
        base_width: int = 64,
        zero_init_last: bool = False,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown ResNet stem {stem!r}: use 'imagenet' (7x7/2 conv, max-pool) "
                             "or 'cifar' (3x3 conv)")
        if shortcut not in ("A", "B"):
            raise ValueError(f"unknown shortcut {shortcut!r}: use 'A' (identity, zero-padded) "
                             "or 'B' (1x1 projection)")
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_chans, self.inplanes)
            self.maxpool = nn.Identity()
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        reduction = 2 if stem == "imagenet" else 1
        self.feature_info = [dict(num_chs=self.inplanes, reduction=reduction, module="relu")]
        reduction *= 2 if stem == "imagenet" else 1  # the stem's max-pool

        gates = iter((drop_path or DropPathSpec()).gates(sum(layers), owner=self))
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                out = planes * block.expansion
                downsample = None
                if s != 1 or self.inplanes != out:
                    downsample = ZeroPadShortcut(out, s) if shortcut == "A" else nn.Sequential(
                        conv1x1(self.inplanes, out, s), norm_layer(out))
                stage.append(block(self.inplanes, planes, s, downsample, next(gates), stride_in_1x1, groups,
                                   base_width, norm_layer))
                self.inplanes = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            reduction *= stride
            self.feature_info.append(dict(num_chs=self.inplanes, reduction=reduction, module=f"layer{i + 1}"))
        self.num_stages = len(layers)
        self.num_features = self.inplanes
        self.global_pool = SelectAdaptivePool2d("avg")
        self.fc = nn.Linear(self.num_features, num_classes)

        he_init_(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_((m.bn2 if isinstance(m, BasicBlock) else m.bn3).weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # N x 64 x 56 x 56 at 224 (N x 16 x 32 x 32 CIFAR)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x  # N x 2048 x 7 x 7 (ResNet-50 at 224), N x 64 x 8 x 8 (CIFAR)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)  # N x C (N x C x H x W with global_pool "")
        return x if pre_logits else self.fc(x)


@register_converter(ResNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    return dict(state_dict)  # same names: conv1, bn1, layer1-4, fc


def _resnet(depth: int, **kwargs) -> ResNet:
    block = BasicBlock if depth < 50 else Bottleneck
    return ResNet(block, _IN_STAGE_DS[depth], **kwargs)


def _cifar_resnet(depth: int, **kwargs) -> ResNet:
    n = _CIFAR_N[depth]
    return ResNet(BasicBlock, (n, n, n), widths=(16, 32, 64), stem="cifar", shortcut="A", **kwargs)


@register_model(**PAPER, params=11_689_512, macs=1.814)
def resnet18(**kwargs) -> ResNet:
    return _resnet(18, **kwargs)


@register_model(**PAPER, params=21_797_672, macs=3.664)
def resnet34(**kwargs) -> ResNet:
    return _resnet(34, **kwargs)


# v1.5, the released layout: torchvision's figures for its weights (acc@1 76.130 / 77.374 / 78.312,
# acc@5 92.862 / 93.546 / 94.046).
@register_model(**PAPER, params=25_557_032, macs=4.089, top1_err=23.87, top5_err=7.138, eval_note=TORCHVISION_V1)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 in the released layout (stride in the 3x3): torchvision's weights load into it."""
    return _resnet(50, **kwargs)


@register_model(**PAPER, params=44_549_160, macs=7.801, top1_err=22.626, top5_err=6.454, eval_note=TORCHVISION_V1)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 in the released layout (stride in the 3x3): torchvision's weights load into it."""
    return _resnet(101, **kwargs)


@register_model(**PAPER, params=60_192_808, macs=11.514, top1_err=21.688, top5_err=5.954, eval_note=TORCHVISION_V1)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 in the released layout (stride in the 3x3): torchvision's weights load into it."""
    return _resnet(152, **kwargs)


# v1, the paper's layout, with its Table 3 10-crop errors. MACs: the reference's 3.858 G for ResNet-50
# (conv + linear; the paper prints 3.8 G) and the paper's Table 1 7.6 G and 11.3 G, which the count
# (7.570 G, 11.282 G) matches at the paper's precision. Moving the stride into the 1x1 saves exactly
# 77,070,336 MACs in each of stages 3-5 (tests/test_resnet.py).
@register_model(**PAPER, params=25_557_032, macs=3.858, top1_err=22.85, top5_err=6.71, eval_note=TEN_CROP)
def resnet50_paper(**kwargs) -> ResNet:
    """ResNet-50 with the stride in the first 1x1 of each bottleneck, the layout the paper evaluated."""
    return _resnet(50, stride_in_1x1=True, **kwargs)


@register_model(**PAPER, params=44_549_160, macs=7.6, top1_err=21.75, top5_err=6.05, eval_note=TEN_CROP)
def resnet101_paper(**kwargs) -> ResNet:
    """ResNet-101 with the stride in the first 1x1 of each bottleneck, the layout the paper evaluated."""
    return _resnet(101, stride_in_1x1=True, **kwargs)


@register_model(**PAPER, params=60_192_808, macs=11.3, top1_err=21.43, top5_err=5.71, eval_note=TEN_CROP)
def resnet152_paper(**kwargs) -> ResNet:
    """ResNet-152 with the stride in the first 1x1 of each bottleneck, the layout the paper evaluated."""
    return _resnet(152, stride_in_1x1=True, **kwargs)


@register_model(**CIFAR, params=269_722, top1_err=8.75)
def resnet20(**kwargs) -> ResNet:
    return _cifar_resnet(20, **kwargs)


@register_model(**CIFAR, params=464_154, top1_err=7.51)
def resnet32(**kwargs) -> ResNet:
    return _cifar_resnet(32, **kwargs)


@register_model(**CIFAR, params=658_586, top1_err=7.17)
def resnet44(**kwargs) -> ResNet:
    return _cifar_resnet(44, **kwargs)


@register_model(**CIFAR, params=853_018, top1_err=6.97)
def resnet56(**kwargs) -> ResNet:
    return _cifar_resnet(56, **kwargs)


@register_model(**CIFAR, params=1_727_962, top1_err=6.43)
def resnet110(**kwargs) -> ResNet:
    return _cifar_resnet(110, **kwargs)


@register_model(**CIFAR, params=19_421_274, top1_err=7.93)
def resnet1202(**kwargs) -> ResNet:
    """ResNet-1202 starts each residual branch at zero (``zero_init_last=True``; False gives the paper's init).

    At He init every block roughly doubles the variance of the signal in eval mode (batch norm's fresh running
    statistics are the identity), and 600 blocks overflow float32 before any training: the untrained model's
    eval-mode output is NaN. In training mode batch norm keeps it finite, which is how the paper trained it.
    """
    return _cifar_resnet(1202, **{"zero_init_last": True, **kwargs})
