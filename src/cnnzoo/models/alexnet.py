"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural Networks", NIPS 2012.

(No arXiv id.) Two layouts:

- ``alexnet``, the paper's network (Section 3.5, Figure 2): five conv layers
  of 96-256-384-384-256 kernels, two fully connected layers of 4096 and a
  1000-way output. The network was split over two GPUs, and conv2, conv4 and
  conv5 see only the kernel maps on their own GPU: they are convolutions in two
  groups; conv3 and the FC layers see both halves. Local response normalisation
  (k=2, n=5, alpha=1e-4, beta=0.75, Section 3.3) follows relu1 and relu2, and
  overlapping max-pooling (3x3, stride 2, Section 3.4) follows both LRNs and
  conv5. Dropout 0.5 on the outputs of fc6 and fc7 (Section 4.2).
- ``alexnet_tv``, torchvision's layout (after Krizhevsky's "one weird trick",
  arXiv 1404.5997): 64-192-384-256-256 kernels, no groups, no LRN, an adaptive
  average pool to 6x6, dropout on the inputs of fc6 and fc7. It loads
  torchvision's weights.
"""

from __future__ import annotations

from typing import Literal

import torch.fx
from torch import Tensor, nn

from ..layers import LocalResponseNorm, SelectAdaptivePool2d, expect_map_size
from ..registry import register_model
from ..weights import register_converter, rename_modules
from .base import ImageClassifier

PAPER = dict(paper="ImageNet Classification with Deep Convolutional Neural Networks")

torch.fx.wrap("expect_map_size")  # a shape check: symbolic tracing keeps it as one call


class AlexNet(ImageClassifier):
    """Five convolutions (11x11/4, 5x5, 3x3, 3x3, 3x3), three max-pools, fc6-fc7-fc8.

    Args:
        widths: kernels of conv1-conv5.
        groups: groups of conv1-conv5; 2 is the paper's two-GPU split.
        lrn: local response normalisation after relu1 and relu2 (the paper).
        conv1_padding: 0 for the paper's 227x227 input; torchvision pads 2 at 224.
        pool_to: ``None`` (the paper: pool5 is 6x6 only at 227) or 6, an adaptive average pool
            to 6x6 before fc6 (torchvision), which lets other input sizes through.
        drop_rate: dropout probability in fc6 and fc7.
        dropout_before_fc: drop the inputs of fc6 and fc7 (torchvision) instead of their outputs (the paper).
        init: ``"paper"`` (weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0,
            Section 5) or ``"default"`` (PyTorch's, as torchvision).
    """

    classifier = "fc8"

    def __init__(
        self,
        widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256),
        groups: tuple[int, int, int, int, int] = (1, 2, 1, 2, 2),
        lrn: bool = True,
        conv1_padding: int = 0,
        pool_to: int | None = None,
        drop_rate: float = 0.5,
        dropout_before_fc: bool = False,
        init: Literal["paper", "default"] = "paper",
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        g1, g2, g3, g4, g5 = groups
        self.conv1 = nn.Conv2d(in_chans, c1, 11, stride=4, padding=conv1_padding, groups=g1)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=g2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1, groups=g3)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g4)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g5)
        self.relu = nn.ReLU(inplace=True)
        # The paper's two GPUs normalise their own 48 (or 128) maps each; one LRN across all channels
        # (as Caffe's reference model does) differs only for the maps within n/2 = 2 of the split.
        self.norm1 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()
        self.norm2 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()
        self.pool = nn.MaxPool2d(3, stride=2)  # overlapping: z=3, s=2; after norm1 and norm2
        self.act5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(3, stride=2)
        self.feature_info = [dict(num_chs=c1, reduction=4, module="norm1"), dict(num_chs=c2, reduction=8, module="norm2"),
                             dict(num_chs=c5, reduction=16, module="act5"), dict(num_chs=c5, reduction=32, module="pool5")]
        # fc6 reads 6x6 maps: exactly those of pool5 (the paper), or pooled to 6x6 adaptively (pool_to=6, torchvision)
        self.pool_to = pool_to
        self.global_pool = SelectAdaptivePool2d("avg", output_size=6)

        self.num_features = c5
        self.head_hidden_size = 4096
        self.dropout_before_fc = dropout_before_fc
        self.drop6 = nn.Dropout(drop_rate)
        self.drop7 = nn.Dropout(drop_rate)
        self.fc6 = nn.Linear(c5 * 6 * 6, self.head_hidden_size)
        self.fc7 = nn.Linear(self.head_hidden_size, self.head_hidden_size)
        self.fc8 = nn.Linear(self.head_hidden_size, num_classes)

        if init == "paper":
            for m in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.fc6, self.fc7, self.fc8):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
            for m in (self.conv2, self.conv4, self.conv5, self.fc6, self.fc7):
                nn.init.ones_(m.bias)  # positive inputs to the ReLUs speed up early learning (Section 5)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.pool(self.norm1(self.relu(self.conv1(x))))  # N x 96 x 27 x 27 at 227 (tv: N x 64 x 27 x 27 at 224)
        x = self.pool(self.norm2(self.relu(self.conv2(x))))  # N x 256 x 13 x 13
        x = self.relu(self.conv3(x))
        x = self.relu(self.conv4(x))
        return self.pool5(self.act5(self.conv5(x)))  # N x 256 x 6 x 6

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool.is_identity():  # global_pool "": the feature map, fc6-fc8 need pooled input
            return x
        if self.pool_to is None:
            x = expect_map_size(x, (6, 6), "fc6 needs 6x6 pool5 maps, got {got}: feed 227x227 images (the paper's "
                                "network), or build with pool_to=6 (as alexnet_tv) for other sizes")
        x = self.global_pool(x)  # N x 9216
        if self.dropout_before_fc:
            x = self.relu(self.fc6(self.drop6(x)))
            x = self.relu(self.fc7(self.drop7(x)))
        else:
            x = self.drop6(self.relu(self.fc6(x)))
            x = self.drop7(self.relu(self.fc7(x)))
        return x if pre_logits else self.fc8(x)


@register_converter(AlexNet, "torchvision")
def _from_torchvision(state_dict: dict) -> dict:
    names = {"features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
             "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8"}
    return rename_modules(state_dict, names)


# The paper says 224x224 inputs, but an 11x11 stride-4 conv without padding gives its 55x55 maps only from 227.
@register_model(**PAPER, input_size=227, fixed_input_size=True, params=60_965_224, macs=0.724, top1_err=40.7, top5_err=18.2,
                eval_note="1 CNN, ILSVRC-2012 val")
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(**kwargs)


@register_model(**PAPER, params=61_100_840, macs=0.714)
def alexnet_tv(**kwargs) -> AlexNet:
    """AlexNet as torchvision builds it; loads torchvision's weights."""
    return AlexNet(widths=(64, 192, 384, 256, 256), groups=(1, 1, 1, 1, 1), lrn=False, conv1_padding=2, pool_to=6,
                   dropout_before_fc=True, init="default", **kwargs)
