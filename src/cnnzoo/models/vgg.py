"""VGG: Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.

arXiv 1409.1556.

The configurations A-E of Table 1: stacks of 3x3 convolutions (stride 1,
padding 1) with a ReLU after each, five 2x2/2 max-pools, then FC-4096,
FC-4096 and FC-1000, with dropout 0.5 after the first two FC layers (Section
3.1). A-LRN adds Krizhevsky et al.'s local response normalisation after the
first conv; C puts a 1x1 conv at the end of blocks 3-5 where D has a 3x3.
The ``_bn`` variants (not in the paper) put a BatchNorm after every conv, as
torchvision does. A, B, D, E and their ``_bn`` variants load torchvision's
weights.
"""

from __future__ import annotations

import re
from typing import Sequence

from torch import Tensor, nn

from ..layers import LocalResponseNorm
from ..registry import register_model
from ..weights import fill_bn_counters, register_converter, rename_modules
from .base import ImageClassifier

PAPER = dict(paper="Very Deep Convolutional Networks for Large-Scale Image Recognition", arxiv="1409.1556")

# Table 1, one column per configuration, in the paper's notation ("conv<receptive field>-<channels>").
_TABLE_1 = {
    "A": "conv3-64 maxpool conv3-128 maxpool conv3-256 conv3-256 maxpool "
         "conv3-512 conv3-512 maxpool conv3-512 conv3-512 maxpool",
    "A-LRN": "conv3-64 LRN maxpool conv3-128 maxpool conv3-256 conv3-256 maxpool "
             "conv3-512 conv3-512 maxpool conv3-512 conv3-512 maxpool",
    "B": "conv3-64 conv3-64 maxpool conv3-128 conv3-128 maxpool conv3-256 conv3-256 maxpool "
         "conv3-512 conv3-512 maxpool conv3-512 conv3-512 maxpool",
    "C": "conv3-64 conv3-64 maxpool conv3-128 conv3-128 maxpool conv3-256 conv3-256 conv1-256 maxpool "
         "conv3-512 conv3-512 conv1-512 maxpool conv3-512 conv3-512 conv1-512 maxpool",
    "D": "conv3-64 conv3-64 maxpool conv3-128 conv3-128 maxpool conv3-256 conv3-256 conv3-256 maxpool "
         "conv3-512 conv3-512 conv3-512 maxpool conv3-512 conv3-512 conv3-512 maxpool",
    "E": "conv3-64 conv3-64 maxpool conv3-128 conv3-128 maxpool conv3-256 conv3-256 conv3-256 conv3-256 maxpool "
         "conv3-512 conv3-512 conv3-512 conv3-512 maxpool conv3-512 conv3-512 conv3-512 conv3-512 maxpool",
}
SINGLE_SCALE = dict(top1_err=25.6, top5_err=8.1, eval_note="single scale (Table 3), ILSVRC-2012 val")


class VGG(ImageClassifier):
    """A VGG network from a column of Table 1.

    Args:
        layers: the column, e.g. ``("conv3-64", "maxpool", ...)``; ``"LRN"`` is Krizhevsky's normalisation.
        batch_norm: a BatchNorm between every conv and its ReLU (torchvision's ``_bn`` models; the
            convs keep their biases there, as torchvision's weights have them).
        drop_rate: dropout after fc6 and fc7.
    """

    classifier = "fc8"

    def __init__(self, layers: Sequence[str], batch_norm: bool = False, drop_rate: float = 0.5,
                 num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        features, channels = [], in_chans
        for layer in layers:
            conv = re.fullmatch(r"conv(\d+)-(\d+)", layer)
            if layer == "maxpool":
                features.append(nn.MaxPool2d(2, stride=2))
            elif layer == "LRN":  # A-LRN, with Krizhevsky et al.'s LRN parameters (Section 2.1)
                features.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
            elif conv:
                size, width = int(conv[1]), int(conv[2])
                features.append(nn.Conv2d(channels, width, size, padding=size // 2))
                features += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
                channels = width
            else:
                raise ValueError(f"unknown VGG layer {layer!r}; use 'conv<size>-<channels>', 'maxpool' or 'LRN'")
        self.features = nn.Sequential(*features)  # same indices as torchvision's ``features``
        # Identity at 224 (pool5 is 7x7); smaller inputs are averaged/replicated to 7x7 as in torchvision.
        # The paper instead evaluates other sizes densely, with the FC layers turned into convolutions.
        self.avgpool = nn.AdaptiveAvgPool2d(7)

        self.num_features = 4096
        self.relu = nn.ReLU(inplace=True)
        self.fc6 = nn.Linear(channels * 7 * 7, self.num_features)
        self.drop6 = nn.Dropout(drop_rate)
        self.fc7 = nn.Linear(self.num_features, self.num_features)
        self.drop7 = nn.Dropout(drop_rate)
        self.fc8 = nn.Linear(self.num_features, num_classes)

        # The paper trains A from N(0, 1e-2) and starts the deeper nets from A's layers, noting that
        # Glorot's initialisation makes that unnecessary; He et al.'s (torchvision's) does so too.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 512 x 7 x 7 at 224

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.avgpool(x).flatten(1)  # N x 25088
        x = self.drop6(self.relu(self.fc6(x)))
        x = self.drop7(self.relu(self.fc7(x)))  # N x 4096
        return x if pre_logits else self.fc8(x)


@register_converter(VGG, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    # Checkpoints saved before PyTorch 0.4 have no BatchNorm num_batches_tracked buffer.
    names = {"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"}
    return fill_bn_counters(rename_modules(state_dict, names))


def _vgg(config: str, **kwargs) -> VGG:
    return VGG(_TABLE_1[config].split(), **kwargs)


@register_model(**PAPER, params=132_863_336, macs=7.609)
def vgg11(**kwargs) -> VGG:
    return _vgg("A", **kwargs)


@register_model(**PAPER, params=132_863_336, macs=7.609)
def vgg11_lrn(**kwargs) -> VGG:
    return _vgg("A-LRN", **kwargs)


@register_model(**PAPER, params=133_047_848, macs=11.308)
def vgg13(**kwargs) -> VGG:
    return _vgg("B", **kwargs)


@register_model(**PAPER, params=133_638_952, macs=11.771)
def vgg16_c(**kwargs) -> VGG:
    return _vgg("C", **kwargs)


@register_model(**PAPER, params=138_357_544, macs=15.470, **SINGLE_SCALE)
def vgg16(**kwargs) -> VGG:
    return _vgg("D", **kwargs)


@register_model(**PAPER, params=143_667_240, macs=19.632)
def vgg19(**kwargs) -> VGG:
    return _vgg("E", **kwargs)


# BatchNorm adds no MACs under the conv + linear convention: the _bn models share their base's MACs.
# vgg13_bn and vgg19_bn have no figures of their own in the reference table; their counts are torchvision's documented ones,
# the base's count plus 2 x (channels of every conv) for BN's gamma and beta.
@register_model(**PAPER, params=132_868_840, macs=7.609)
def vgg11_bn(**kwargs) -> VGG:
    return _vgg("A", batch_norm=True, **kwargs)


@register_model(**PAPER, params=133_053_736, macs=11.308)
def vgg13_bn(**kwargs) -> VGG:
    return _vgg("B", batch_norm=True, **kwargs)


@register_model(**PAPER, params=138_365_992, macs=15.470)
def vgg16_bn(**kwargs) -> VGG:
    return _vgg("D", batch_norm=True, **kwargs)


@register_model(**PAPER, params=143_678_248, macs=19.632)
def vgg19_bn(**kwargs) -> VGG:
    return _vgg("E", batch_norm=True, **kwargs)
