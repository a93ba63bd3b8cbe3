"""SqueezeNet: Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", arXiv 1602.07360.

Three strategies (Section 3.1): replace 3x3 filters by 1x1 ones, feed the
remaining 3x3 filters fewer input channels (the squeeze layer), and downsample
late so that the convolutions work on large maps. The ``Fire`` module
(Fig. 1) does the first two: a squeeze layer of ``s1x1`` 1x1 filters, then an
expand layer of ``e1x1`` 1x1 and ``e3x3`` 3x3 filters whose outputs are
concatenated. The network (Table 1, Fig. 2 left): conv1, eight Fire modules
(fire2-fire9) with max-pools after conv1, fire4 and fire8, dropout 50% after
fire9, conv10 (1x1, one filter per class) and a global average pool: no fully
connected layer at all.

``squeezenet1_1`` is the release's SqueezeNet v1.1 (not in the paper): a 3x3
conv1 with 64 filters and the pools moved earlier (after conv1, fire3, fire5),
2.4x less computation for the same accuracy by the release's account (conv
MACs at 224 as counted here: 0.349 G against 0.819 G, 2.3x).
Both follow the released Caffe models (torchvision ports them; its weights
load with ``import_weights(..., source="torchvision")``): every pool rounds its
output size up, as Caffe's do.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier

PAPER = dict(paper="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
             arxiv="1602.07360")
# Table 2: SqueezeNet (uncompressed, 4.8 MB) 57.5% top-1 / 80.3% top-5 against AlexNet's 57.2% / 80.3%.
# The reference figures carry no error for it, so none is claimed.


class FireRow(NamedTuple):
    """One Fire module of Table 1: its name and the filters of its squeeze and expand layers."""

    name: str
    s1x1: int
    e1x1: int
    e3x3: int


F = FireRow
# Table 1 (v1.0) and the v1.1 release: conv1 (filters, kernel), then Fire rows and 3x3/2 max-pools in order.
# The expand layers widen by 128 filters every second module, the squeeze layers are 1/8 of them
# (the paper's metaparameters base_e = incr_e = 128, freq = 2, SR = 0.125).
LAYOUTS = {
    "1_0": ((96, 7), ("maxpool1", F("fire2", 16, 64, 64), F("fire3", 16, 64, 64), F("fire4", 32, 128, 128),
                      "maxpool4", F("fire5", 32, 128, 128), F("fire6", 48, 192, 192), F("fire7", 48, 192, 192),
                      F("fire8", 64, 256, 256), "maxpool8", F("fire9", 64, 256, 256))),
    "1_1": ((64, 3), ("maxpool1", F("fire2", 16, 64, 64), F("fire3", 16, 64, 64), "maxpool3",
                      F("fire4", 32, 128, 128), F("fire5", 32, 128, 128), "maxpool5", F("fire6", 48, 192, 192),
                      F("fire7", 48, 192, 192), F("fire8", 64, 256, 256), F("fire9", 64, 256, 256))),
}


class Fire(nn.Module):
    """Fig. 1: squeeze (``s1x1`` 1x1 filters), then expand (``e1x1`` 1x1 and ``e3x3`` 3x3, concatenated).

    ReLU after the squeeze and after each expand convolution. Section 3.2 keeps
    ``s1x1 < e1x1 + e3x3`` so that the squeeze limits the 3x3 filters' input channels.
    """

    def __init__(self, in_chs: int, s1x1: int, e1x1: int, e3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_chs, s1x1, 1)
        self.expand1x1 = nn.Conv2d(s1x1, e1x1, 1)
        self.expand3x3 = nn.Conv2d(s1x1, e3x3, 3, padding=1)  # 1-pixel zero padding: both expand maps align
        self.act = nn.ReLU(inplace=True)
        self.out_channels = e1x1 + e3x3

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.squeeze(x))
        return torch.cat([self.act(self.expand1x1(x)), self.act(self.expand3x3(x))], 1)


class SqueezeNet(ImageClassifier):
    """SqueezeNet (Table 1): conv1, Fire modules and max-pools (``LAYOUTS``), dropout, conv10, ReLU, global pool.

    conv10 is a 1x1 convolution, i.e. the same linear map applied at every
    position; it is kept as an ``nn.Linear`` over the channels so that the
    classifier interface (``get_classifier().out_features``, ``reset_classifier``)
    holds. Its ReLU comes before the pooling, so ``forward_head(..., pre_logits=True)``
    returns the globally pooled fire9 features, which the classifier does not act on directly.

    Args:
        version: ``"1_0"`` (the paper's) or ``"1_1"`` (the release's v1.1).
        drop_rate: dropout after fire9 (Section 3.3: 50%).
    """

    classifier = "conv10"

    def __init__(self, version: str = "1_0", num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5):
        super().__init__()
        if version not in LAYOUTS:
            raise ValueError(f"unknown SqueezeNet version {version!r}: use {' or '.join(map(repr, LAYOUTS))}")
        (conv1_filters, conv1_kernel), rows = LAYOUTS[version]
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(in_chans, conv1_filters, conv1_kernel, stride=2), relu1=nn.ReLU(inplace=True))
        chs, reduction, last = conv1_filters, 2, "relu1"
        self.feature_info = []  # the map before each max-pool, and the last one
        for row in rows:
            if isinstance(row, str):
                self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.{last}"))
                layers[row] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
                reduction *= 2
            else:
                layers[row.name] = Fire(chs, row.s1x1, row.e1x1, row.e3x3)
                chs, last = layers[row.name].out_channels, row.name
        self.features = nn.Sequential(layers)
        self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.{last}"))

        self.num_features = chs  # 512
        self.dropout = nn.Dropout(drop_rate)
        self.conv10 = nn.Linear(chs, num_classes)
        self.relu10 = nn.ReLU(inplace=True)

        # The release's fillers: Xavier for every convolution, Gaussian (std 0.01) for conv10, biases 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")  # Caffe's xavier: variance 1 / fan_in
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.conv10.weight, std=0.01)
        nn.init.zeros_(self.conv10.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 512 x 13 x 13 at 224

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(x)
        if pre_logits:
            return x.mean((2, 3))  # N x 512
        x = self.relu10(self.conv10(x.permute(0, 2, 3, 1)))  # conv10: N x 13 x 13 x classes
        return x.mean((1, 2))  # global average pool (avgpool10): N x classes


@register_converter(SqueezeNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    """torchvision ``squeezenet1_0/1_1``: ``features.N`` -> our layer names, ``classifier.1`` (a 1x1 conv) -> conv10."""
    version = "1_1" if state_dict["features.0.weight"].shape[-1] == 3 else "1_0"
    names = ["conv1", "relu1", *(r if isinstance(r, str) else r.name for r in LAYOUTS[version][1])]
    out = {}
    for key, value in state_dict.items():
        if key.startswith("classifier.1."):
            key = "conv10." + key.removeprefix("classifier.1.")
            value = value.flatten(1) if value.dim() == 4 else value  # classes x 512 x 1 x 1 -> classes x 512
        else:
            key = re.sub(r"^features\.(\d+)\.", lambda m: f"features.{names[int(m[1])]}.", key)
        out[key] = value
    return out


@register_model(**PAPER, params=1_248_424)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    """The paper's SqueezeNet (Table 1)."""
    return SqueezeNet("1_0", **kwargs)


@register_model(**PAPER, params=1_235_496)
def squeezenet1_1(**kwargs) -> SqueezeNet:
    """The release's SqueezeNet v1.1: the same Fire modules, a smaller conv1 and earlier pools."""
    return SqueezeNet("1_1", **kwargs)
