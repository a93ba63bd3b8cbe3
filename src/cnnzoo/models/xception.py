"""Xception: Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017, arXiv 1610.02357.

Fig. 5: an entry flow (two 3x3 convolutions, then three modules that halve the
map), a middle flow (eight identical modules at 728 channels) and an exit flow
(one module that halves the map, two separable convolutions, global average
pool, FC): 36 convolution layers in 14 modules, every module but the first
(the two plain convolutions) and the last (the two final separable
convolutions) with a linear residual connection. A separable convolution is
a depthwise then a pointwise convolution with nothing in between
(``cnnzoo.layers.SeparableConv2d``); every one is followed by batch norm.

The paper's ablations (Section 4.7) are registered too: ``xception_noresidual``
(Fig. 9) and ``xception_mid_relu`` / ``xception_mid_elu`` (Fig. 10, a non-linearity
between depthwise and pointwise). The middle flow's eight residual modules can
be dropped with stochastic depth (Huang et al. 2016, arXiv 1603.09382), see
``cnnzoo.layers.drop``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Callable

from torch import Tensor, nn

from ..layers import DropPathSpec, SeparableConv2d, StochasticDepth
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier, he_init_

PAPER = dict(paper="Xception: Deep Learning with Depthwise Separable Convolutions", arxiv="1610.02357",
             input_size=299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RESULT = dict(top1_err=21.0, top5_err=5.5, eval_note="single crop")  # Table 1

# Fig. 5: the separable convolutions' widths in each module of the three flows.
ENTRY_FLOW = ((128, 128), (256, 256), (728, 728))  # each ends with a 3x3/2 max-pool
MIDDLE_FLOW = ((728, 728, 728),) * 8
EXIT_FLOW = (728, 1024)  # ends with a 3x3/2 max-pool; then SeparableConv 1536 and 2048

# timm's legacy_xception (ported from Keras) keeps PyTorch's default BN epsilon; its weights were
# evaluated with it, so it is used here rather than Keras's 1e-3.
BN_EPS = 1e-5

NormLayer = Callable[[int], nn.Module]


class XceptionModule(nn.Module):
    """ReLU -> SeparableConv 3x3 -> BN, once per width, then a 3x3/2 max-pool if strided; plus the residual.

    The shortcut is the identity, or a strided 1x1 convolution with BN where
    the shape changes (Fig. 5). ``start_with_relu=False`` for the first module,
    whose input has just been through a ReLU. ``drop_path`` gates the residual
    branch with stochastic depth (identity shortcuts only).
    """

    def __init__(
        self,
        in_chs: int,
        widths: tuple[int, ...],
        stride: int = 1,
        start_with_relu: bool = True,
        residual: bool = True,
        mid_act_layer: Callable[..., nn.Module] | None = None,
        drop_path: StochasticDepth | None = None,
        norm_layer: NormLayer = partial(nn.BatchNorm2d, eps=BN_EPS),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        chs = in_chs
        for i, width in enumerate(widths):
            # The first ReLU must not overwrite the module's input: the shortcut still needs it.
            layers += [nn.ReLU(inplace=i > 0), SeparableConv2d(chs, width, 3, mid_act_layer=mid_act_layer),
                       norm_layer(width)]
            chs = width
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.branch = nn.Sequential(*layers)
        self.residual = residual
        self.shortcut = None
        if residual and (stride != 1 or chs != in_chs):
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, chs, 1, stride, bias=False), norm_layer(chs))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        if not self.residual:
            return self.branch(x)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        if self.drop_path is None:
            return shortcut + self.branch(x)
        return self.drop_path(shortcut, self.branch, x)  # may return x itself: nothing after this is in place


class Xception(ImageClassifier):
    """Xception (Fig. 5).

    Args:
        residual: residual connections around the modules (False: the ablation of Fig. 9).
        mid_act_layer: a non-linearity between each depthwise and pointwise
            convolution (``nn.ReLU``, ``nn.ELU``: Fig. 10); None, the paper's choice, for none.
        drop_rate: dropout before the classifier (Section 4.3: 0.5 for ImageNet).
        norm_layer: builds every normalisation layer from its channel count (BN, eps ``BN_EPS``).
        drop_path: stochastic depth over the eight middle-flow modules (``create_model`` builds it from
            the ``drop_path_*`` keywords); see ``cnnzoo.layers.drop``.
    """

    def __init__(
        self,
        residual: bool = True,
        mid_act_layer: Callable[..., nn.Module] | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        drop_path: DropPathSpec | None = None,
        norm_layer: NormLayer = partial(nn.BatchNorm2d, eps=BN_EPS),
    ):
        super().__init__()
        drop_path = drop_path or DropPathSpec()
        if drop_path.rate and not residual:
            raise ValueError(f"drop_path_rate={drop_path.rate} needs residual connections; use residual=True")
        # Entry flow: two plain 3x3 convolutions without padding (299 -> 149 -> 147).
        self.conv1 = nn.Conv2d(in_chans, 32, 3, stride=2, bias=False)
        self.bn1 = norm_layer(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = norm_layer(64)
        self.act2 = nn.ReLU(inplace=True)

        module = dict(residual=residual, mid_act_layer=mid_act_layer, norm_layer=norm_layer)
        entry, chs = [], 64
        for i, widths in enumerate(ENTRY_FLOW):
            entry.append(XceptionModule(chs, widths, stride=2, start_with_relu=i > 0, **module))
            chs = widths[-1]
        self.entry_flow = nn.Sequential(*entry)

        gates = drop_path.gates(len(MIDDLE_FLOW), owner=self)
        self.middle_flow = nn.Sequential(*(
            XceptionModule(chs, widths, drop_path=gate, **module) for widths, gate in zip(MIDDLE_FLOW, gates)
        ))

        self.exit_flow = XceptionModule(chs, EXIT_FLOW, stride=2, **module)
        self.conv3 = SeparableConv2d(EXIT_FLOW[-1], 1536, 3, mid_act_layer=mid_act_layer)
        self.bn3 = norm_layer(1536)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048, 3, mid_act_layer=mid_act_layer)
        self.bn4 = norm_layer(2048)
        self.act4 = nn.ReLU(inplace=True)

        self.num_features = 2048
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

        he_init_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))  # N x 32 x 149 x 149 at 299
        x = self.act2(self.bn2(self.conv2(x)))  # N x 64 x 147 x 147
        x = self.entry_flow(x)  # N x 728 x 19 x 19
        x = self.middle_flow(x)  # N x 728 x 19 x 19
        x = self.exit_flow(x)  # N x 1024 x 10 x 10
        x = self.act3(self.bn3(self.conv3(x)))  # N x 1536 x 10 x 10
        return self.act4(self.bn4(self.conv4(x)))  # N x 2048 x 10 x 10

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))  # N x 2048
        return x if pre_logits else self.fc(x)


def _timm_block(match: re.Match) -> str:
    """timm's block1-12 -> entry_flow.0-2, middle_flow.0-7, exit_flow."""
    i = int(match[1])
    return f"entry_flow.{i - 1}." if i <= 3 else f"middle_flow.{i - 4}." if i <= 11 else "exit_flow."


@register_converter(Xception, "timm")
def _from_timm(state_dict: dict) -> dict:
    """timm ``legacy_xception``: blockN.rep / skip / skipbn, separable convs' ``conv1`` is our ``depthwise``."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^block(\d+)\.", _timm_block, key)
        key = key.replace(".rep.", ".branch.").replace(".skipbn.", ".shortcut.1.").replace(".skip.", ".shortcut.0.")
        out[key.replace(".conv1.", ".depthwise.")] = value  # top-level conv1 has no leading dot: untouched
    return out


@register_model(**PAPER, **RESULT, params=22_855_952, macs=8.36)
def xception(**kwargs) -> Xception:
    return Xception(**kwargs)


@register_model(**PAPER)
def xception_noresidual(**kwargs) -> Xception:
    """Fig. 9's ablation: no residual connections (and so no 1x1 projections)."""
    return Xception(residual=False, **kwargs)


# An activation has no parameters and no MACs: the reference figures still hold.
@register_model(**PAPER, params=22_855_952, macs=8.36)
def xception_mid_relu(**kwargs) -> Xception:
    """Fig. 10's ablation: a ReLU between each depthwise and pointwise convolution."""
    return Xception(mid_act_layer=nn.ReLU, **kwargs)


@register_model(**PAPER, params=22_855_952, macs=8.36)
def xception_mid_elu(**kwargs) -> Xception:
    """Fig. 10's ablation: an ELU between each depthwise and pointwise convolution."""
    return Xception(mid_act_layer=nn.ELU, **kwargs)
