"""DenseNet: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017.

arXiv 1608.06993.

Every layer of a dense block receives the concatenation of all earlier
feature maps of the block and adds k (the growth rate) maps of its own. The
networks here are DenseNet-BC: each layer is BN-ReLU-Conv(1x1, 4k)-BN-ReLU-
Conv(3x3, k) (the "B" bottleneck) and each transition halves the channels
(compression theta = 0.5, "C") with BN-ReLU-Conv(1x1) and a 2x2 average pool.

- ImageNet (Table 1): a 7x7/2 conv of 2k channels and a 3x3/2 max-pool, four
  dense blocks, global average pool, FC. ``densenet121/169/201/264`` (k=32)
  and ``densenet161`` (k=48, released with the paper's code) in torchvision's
  layout, which loads torchvision's weights (264 is not in torchvision).
- CIFAR (Section 3, "Implementation details"): a 3x3 conv of 2k channels,
  three dense blocks of (L - 4) / 6 bottleneck layers each on 32x32, 16x16 and
  8x8 maps, global average pool, FC: ``densenet_bc_100_12``,
  ``densenet_bc_250_24``, ``densenet_bc_190_40``.

``memory_efficient=True`` (Pleiss et al., "Memory-Efficient Implementation of
DenseNets", arXiv 1707.06990) recomputes each layer's concatenation, BN, ReLU
and 1x1 conv in the backward pass instead of storing them: the stored
activations of a block then grow linearly with its depth, not quadratically.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from typing import Iterator, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layers import SelectAdaptivePool2d
from ..registry import CIFAR10_MEAN, CIFAR10_STD, register_model
from ..weights import fill_bn_counters, register_converter, rename_modules
from .base import ImageClassifier, he_init_

PAPER = dict(paper="Densely Connected Convolutional Networks", arxiv="1608.06993")
SINGLE_CROP = "single crop, ImageNet val"
CIFAR = dict(PAPER, input_size=(3, 32, 32), num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)

# Layers per dense block: Table 1 (k = 32), and the released DenseNet-161 (k = 48).
_IN_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32), 264: (6, 12, 64, 48),
              161: (6, 12, 36, 24)}


@contextmanager
def _unchanged_running_stats(bn: nn.BatchNorm2d) -> Iterator[None]:
    """Undo the running-statistics update of a recomputed training-mode BatchNorm (one batch counts once)."""
    saved = [b.clone() for b in bn.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(bn.buffers(), saved):
                buffer.copy_(value)


class DenseLayer(nn.Module):
    """H_l of DenseNet-B: BN-ReLU-Conv(1x1, bn_size * k) then BN-ReLU-Conv(3x3, k), on all earlier maps."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0,
                 memory_efficient: bool = False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: Tensor) -> Tensor:
        """The part whose activations grow with the layer's depth: concatenation, BN, ReLU, 1x1 conv."""
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[Tensor]) -> Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            # Keep only the inputs (which the block keeps anyway); rebuild the rest in backward.
            # In training mode the recomputed BN normalises with the same batch statistics, but it
            # would also move the running statistics a second time: the recompute context undoes that.
            out = checkpoint(self.bottleneck, *features, use_reentrant=False,
                             context_fn=lambda: (nullcontext(), _unchanged_running_stats(self.norm1)))
        else:
            out = self.bottleneck(*features)  # N x (bn_size * k) x H x W
        return self.drop(self.conv2(self.relu2(self.norm2(out))))  # N x k x H x W


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; returns its input concatenated with every layer's k new maps."""

    def __init__(self, num_layers: int, in_features: int, growth_rate: int, **layer_kwargs):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_features + i * growth_rate, growth_rate, **layer_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # N x (C + num_layers * k) x H x W


class Transition(nn.Sequential):
    """Between blocks: BN-ReLU-Conv(1x1) to ``out_features`` channels, then a 2x2 average pool."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(OrderedDict(
            norm=nn.BatchNorm2d(in_features),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_features, out_features, 1, bias=False),
            pool=nn.AvgPool2d(2, stride=2),
        ))


class DenseNet(ImageClassifier):
    """A DenseNet-BC: stem, dense blocks joined by compressing transitions, BN-ReLU, global pool, FC.

    Args:
        growth_rate: k, the maps each dense layer adds.
        block_config: dense layers per block.
        num_init_features: the stem conv's channels (2k in the paper's DenseNet-BC).
        bn_size: the bottleneck 1x1 conv outputs ``bn_size * k`` maps (4 in the paper).
        compression: theta, a transition outputs floor(theta * m) of its m input maps.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv).
        drop_rate: dropout after each dense layer's 3x3 conv, as torchvision (the paper uses 0.2 on CIFAR
            without augmentation, after every conv but the first: also the 1x1s and the transitions').
        memory_efficient: recompute each dense layer's concatenation-BN-ReLU-1x1 conv in backward.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        stem: Literal["imagenet", "cifar"] = "imagenet",
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown DenseNet stem {stem!r}: use 'imagenet' (7x7/2 conv, max-pool) "
                             "or 'cifar' (3x3 conv)")
        if stem == "imagenet":
            layers = OrderedDict(
                conv0=nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(3, stride=2, padding=1),
            )
            self.feature_info = [dict(num_chs=num_init_features, reduction=2, module="features.relu0")]
            reduction = 4
        else:  # the first dense layer's own BN-ReLU follows the conv
            layers = OrderedDict(conv0=nn.Conv2d(in_chans, num_init_features, 3, padding=1, bias=False))
            self.feature_info = [dict(num_chs=num_init_features, reduction=1, module="features.conv0")]
            reduction = 1
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            layers[f"denseblock{i + 1}"] = DenseBlock(num_layers, channels, growth_rate, bn_size=bn_size,
                                                      drop_rate=drop_rate, memory_efficient=memory_efficient)
            channels += num_layers * growth_rate
            if i < len(block_config) - 1:
                # each block's output, before its transition halves channels and map
                self.feature_info.append(dict(num_chs=channels, reduction=reduction, module=f"features.denseblock{i + 1}"))
                layers[f"transition{i + 1}"] = Transition(channels, int(channels * compression))
                channels = int(channels * compression)
                reduction *= 2
        layers["norm5"] = nn.BatchNorm2d(channels)
        self.feature_info.append(dict(num_chs=channels, reduction=reduction, module="features.norm5"))
        self.features = nn.Sequential(layers)  # torchvision's names, so its weights map one to one
        self.relu = nn.ReLU(inplace=True)
        self.global_pool = SelectAdaptivePool2d("avg")
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)

        he_init_(self)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        # N x 1024 x 7 x 7 (DenseNet-121 at 224); N x 342 x 8 x 8 (DenseNet-BC-100-12 at 32)
        return self.relu(self.features(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)


@register_converter(DenseNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    # torchvision's published DenseNet checkpoints name the dense layers' modules "norm.1", "conv.2", ...
    # (and, older than PyTorch 0.4, have no num_batches_tracked); its current models say "norm1", "conv2".
    state_dict = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", k): v
                  for k, v in state_dict.items()}
    return fill_bn_counters(rename_modules(state_dict, {"classifier": "fc"}))


def _densenet(depth: int, growth_rate: int = 32, **kwargs) -> DenseNet:
    return DenseNet(growth_rate, _IN_BLOCKS[depth], num_init_features=2 * growth_rate, **kwargs)


def _cifar_densenet(depth: int, growth_rate: int, **kwargs) -> DenseNet:
    n = (depth - 4) // 6  # L = 3 blocks x n layers x 2 convs + stem conv + 2 transition convs + FC
    return DenseNet(growth_rate, (n, n, n), num_init_features=2 * growth_rate, stem="cifar", **kwargs)


@register_model(**PAPER, params=7_978_856, macs=2.834, top1_err=25.02, top5_err=7.71, eval_note=SINGLE_CROP)
def densenet121(**kwargs) -> DenseNet:
    return _densenet(121, **kwargs)


@register_model(**PAPER, params=14_149_480, macs=3.360, top1_err=23.80, top5_err=6.85, eval_note=SINGLE_CROP)
def densenet169(**kwargs) -> DenseNet:
    return _densenet(169, **kwargs)


@register_model(**PAPER, params=20_013_928, macs=4.291, top1_err=22.58, top5_err=6.34, eval_note=SINGLE_CROP)
def densenet201(**kwargs) -> DenseNet:
    return _densenet(201, **kwargs)


@register_model(**PAPER, params=33_337_704, macs=5.752, top1_err=22.15, top5_err=6.12, eval_note=SINGLE_CROP)
def densenet264(**kwargs) -> DenseNet:
    return _densenet(264, **kwargs)


@register_model(**PAPER, params=28_681_000, macs=7.728)
def densenet161(**kwargs) -> DenseNet:
    return _densenet(161, growth_rate=48, **kwargs)


@register_model(**CIFAR, params=769_162, top1_err=4.51, eval_note="CIFAR-10 test error, standard augmentation")
def densenet_bc_100_12(**kwargs) -> DenseNet:
    return _cifar_densenet(100, 12, **kwargs)


@register_model(**CIFAR, params=15_324_406)
def densenet_bc_250_24(**kwargs) -> DenseNet:
    return _cifar_densenet(250, 24, **kwargs)


@register_model(**CIFAR, params=25_624_430)
def densenet_bc_190_40(**kwargs) -> DenseNet:
    return _cifar_densenet(190, 40, **kwargs)
