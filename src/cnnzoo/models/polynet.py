"""PolyNet: Zhang, Li, Loy, Lin, "PolyNet: A Pursuit of Structural Diversity in Very Deep Networks",
CVPR 2017, arXiv 1611.05725.

A PolyInception module adds polynomial compositions of Inception-residual
blocks F, G, H (the residual branches of Inception-ResNet-v2's stage it sits
in) to the identity I; every non-identity path is scaled by beta (0.3) and the
sum goes through a ReLU:

    2-way   I + F + G         poly-2   I + F + F^2          mpoly-2   I + F + GF
    3-way   I + F + G + H     poly-3   I + F + F^2 + F^3    mpoly-3   I + F + GF + HGF

plus ``1-way`` (I + F, the plain Inception-ResNet unit) for the unchanged
stages. The cascades (poly, mpoly) are computed as such: order k applies one
block to order k-1's output, so poly-3 evaluates F three times, not six
(F, F(F), F(F(F)) sharing the earlier results). As in the release, the input
of each next order is the ReLU of the previous order's (linear) output.

Stochastic paths: in training each non-identity path has its own gate (one
``cnnzoo.layers.StochasticDepth`` per path, survival p_l falling linearly
over the network's modules, ``drop_path_rate`` = 1 - p_L). A dropped path is
not computed; in a cascade an earlier order still runs when a later kept
order needs it, but nothing past the last kept order does. At evaluation every
path runs (scaled by p_l unless ``drop_path_inverted``).

The network is Inception-ResNet-v2 in the layout of the PolyNet release
(Inception-v4 stem to 384 channels, stages of 384 / 1152 / 2048 channels, a
BN after each block's final 1x1, BN eps 1e-5), with the modules of each stage
chosen per position: see ``PolyNet`` and the registered names at the end.
The ablation networks use this layout too, as the paper's own Inception-ResNet-v2
(of which the release is the deepest instance), rather than the TF-slim release
of ``cnnzoo.models.inception_resnet`` (320 / 1088 / 2080 channels, no BN after
the final 1x1): our choice, since the paper does not list its layers.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Callable, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Concat, ConvBnAct, DropPathSpec, SelectAdaptivePool2d, StochasticDepth
from ..registry import register_model
from ..weights import register_converter
from .base import ImageClassifier
from .inception_resnet import STAGE_BLOCKS, InceptionResidual

PAPER = dict(paper="PolyNet: A Pursuit of Structural Diversity in Very Deep Networks", arxiv="1611.05725")
VERY_DEEP = dict(PAPER, input_size=331, top1_err=18.71, top5_err=4.25, eval_note="single crop, ImageNet val")
# The ablation networks are registered at Inception-ResNet-v2's 299 x 299 input.
ABLATION = dict(PAPER, input_size=299)


class Kind(NamedTuple):
    """A PolyInception design: its non-identity paths, distinct blocks, and whether the paths cascade."""

    paths: int
    blocks: int
    cascade: bool  # path k applies a block to path k-1's output (else every path reads the input)


KINDS = {
    "1-way": Kind(1, 1, False),  # I + F: the Inception-ResNet unit itself
    "2-way": Kind(2, 2, False),  # I + F + G
    "3-way": Kind(3, 3, False),  # I + F + G + H
    "poly-2": Kind(2, 1, True),  # I + F + F^2
    "poly-3": Kind(3, 1, True),  # I + F + F^2 + F^3
    "mpoly-2": Kind(2, 2, True),  # I + F + GF
    "mpoly-3": Kind(3, 3, True),  # I + F + GF + HGF
}

# The width of each stage in the release's layout (Inception-ResNet-v2's release: 320 / 1088 / 2080).
STAGE_WIDTHS = {"A": 384, "B": 1152, "C": 2048}

# Very Deep PolyNet: stage A 10 x 2-way, B 10 x (poly-3, 2-way), C 5 x (poly-3, 2-way).
# Evidence for the order within each stage:
# - the paper's text (arXiv 1611.05725, the Very Deep PolyNet section) gives the counts and says the stages
#   are mixed: stage A 10 2-way modules; stage B 10 poly-3 and 10 2-way; stage C 5 poly-3 and 5 2-way. It
#   names no mpoly-3 there (mpoly-3 appears in the ablations and in the 6-12-6 mixed stage B only, see
#   MIXED_B), and its text does not fix which kind comes first.
# - the released model (the Caffe release as ported in pretrainedmodels/models/polynet.py, whose weights
#   import here) fixes the order: stage_a is InceptionResNetA2Way x 10; stage_b alternates
#   InceptionResNetBPoly3, InceptionResNetB2Way, ... starting with poly-3 (20 modules); stage_c alternates
#   InceptionResNetCPoly3, InceptionResNetC2Way starting with poly-3 (10 modules).
#   tests/test_polynet.py::test_very_deep_layout_is_the_releases checks this against the installed package.
VERY_DEEP_DEPTHS = (10, 20, 10)
VERY_DEEP_KINDS = ("2-way", ("poly-3", "2-way"), ("poly-3", "2-way"))
# The paper scales every path by beta = 0.3 (its training setup); the release multiplies the paths of its 40 modules by
# factors falling linearly from 1 to 0.7 (printed to 6 decimals) instead: the shape of a linear survival
# schedule with p_L = 0.7 applied at evaluation, i.e. stochastic paths' eval-time scaling already folded in.
# The release does not say; its weights need its numbers. ``residual_scale`` chooses (see ``polynet``).
PAPER_BETA = 0.3
RELEASED_BETAS = tuple(round(1 - 0.3 * i / 39, 6) for i in range(40))

PolySharing = Literal["full", "bn", "convs"]


class PolyConvBnAct(nn.Module):
    """Conv -> BN (-> ReLU) whose conv may serve several orders of a poly-N module, each with its own BN.

    ``per_order`` tells ``InceptionResidual.transform`` to pass the order along.
    """

    per_order = True

    def __init__(self, in_chs: int, out_chs: int, kernel_size, stride: int = 1, padding=0, orders: int = 1,
                 eps: float = 1e-5, act: bool = True, norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False)
        self.bn = nn.ModuleList(norm_layer(out_chs, eps=eps) for _ in range(orders))
        self.act = act

    def forward(self, x: Tensor, order: int = 0) -> Tensor:  # PerOrder calls its single-BN layers without one
        x = self.bn[order if len(self.bn) > 1 else 0](self.conv(x))
        return F.relu(x, inplace=True) if self.act else x


class PerOrder(nn.ModuleList):
    """One layer per order of a poly-N module: the release's final 1x1 conv + BN of each order."""

    per_order = True

    def forward(self, x: Tensor, order: int) -> Tensor:
        return self[order](x)


def inception_block(stage: str, orders: int = 1, sharing: PolySharing = "full", eps: float = 1e-5,
                    norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d) -> InceptionResidual:
    """F: Inception-ResNet-v2's block of ``stage`` (``Block35 / Block17 / Block8``) in the release's layout.

    The stage's width (``STAGE_WIDTHS``), convs without bias each followed by BN
    (eps 1e-5), and a linear 1x1 conv + BN back to the width. Only ``transform``
    (F itself) is used: the PolyInception module adds, scales and gates the paths.
    ``orders`` > 1 builds the F of a poly-N module that serves every order:
    ``sharing="full"`` one F, BNs included (the paper's text: "F shared");
    ``"bn"`` shared convs with one BN set per order; ``"convs"`` also one final
    1x1 conv + BN per order. The paper's Very Deep PolyNet figures (18.71 /
    4.25 %) are those of the released model, which is ``"convs"``: its
    ``PolyConv2d`` keeps a BN per order (``bn_blocks``) and its
    ``conv2d_blocks`` a final 1x1 per order. The paper does not say how its
    ablation networks share BN; a Caffe net shares convolution weights by name
    but keeps each BN layer's own statistics, so per-order BN ("bn" or
    "convs") is the likely one. The registered ablations use "full" (the
    text's reading); pass ``poly_sharing="bn"`` for per-order BN.
    """
    if sharing not in ("full", "bn", "convs"):
        raise ValueError(f"unknown poly_sharing {sharing!r}: use 'full', 'bn' or 'convs'")
    bn_orders = orders if sharing != "full" else 1
    conv_block = partial(PolyConvBnAct, orders=bn_orders, eps=eps, norm_layer=norm_layer)

    def up_block(in_chs: int, width: int) -> nn.Module:
        if sharing == "convs" and orders > 1:
            return PerOrder(PolyConvBnAct(in_chs, width, 1, eps=eps, act=False, norm_layer=norm_layer)
                            for _ in range(orders))
        return PolyConvBnAct(in_chs, width, 1, orders=bn_orders, eps=eps, act=False, norm_layer=norm_layer)

    return STAGE_BLOCKS[stage](no_relu=True, conv_block=conv_block, width=STAGE_WIDTHS[stage], up_block=up_block)


class PolyInception(nn.Module):
    """relu(x + sum over the kind's kept paths of beta * path(x)), see the module docstring.

    Args:
        kind: one of ``KINDS``.
        stage: ``"A"``, ``"B"`` or ``"C"``: which Inception-residual blocks F, G, H are.
        beta: residual scale of every path.
        drop_path: the module's gate (its survival p_l, mode, stream): each path gets a twin of it.
        poly_sharing: in poly-N, ``"full"`` shares all of F between the orders (the paper's text);
            ``"bn"`` shares F's convolutions but gives each order its own BNs; ``"convs"`` shares only
            F's convolutions, with a BN set and a final 1x1 per order (the release). See ``inception_block``.
    """

    def __init__(self, kind: str, stage: str, beta: float = 0.3, drop_path: StochasticDepth | None = None,
                 poly_sharing: PolySharing = "full", eps: float = 1e-5,
                 norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown PolyInception kind {kind!r}: use one of {', '.join(KINDS)}")
        self.kind, self.beta = kind, beta
        spec = KINDS[kind]
        self.cascade = spec.cascade
        self.poly = spec.blocks == 1 and spec.paths > 1  # one F serving every order
        orders = spec.paths if self.poly else 1
        self.blocks = nn.ModuleList(inception_block(stage, orders, poly_sharing, eps, norm_layer)
                                    for _ in range(spec.blocks))
        drop_path = drop_path or StochasticDepth()
        self.drop_paths = nn.ModuleList(drop_path.twin() for _ in range(spec.paths))

    def path(self, k: int, x: Tensor) -> Tensor:
        """Path k's last block applied to ``x`` (the input, or in a cascade order k-1's ReLU'd output)."""
        if self.poly:
            return self.blocks[0].transform(x, k)  # F again, at order k
        return self.blocks[k].transform(x)

    def forward(self, x: Tensor) -> Tensor:
        keep = [gate.open() for gate in self.drop_paths]
        out = x
        if self.cascade:
            last = max((k for k, kept in enumerate(keep) if kept), default=-1)
            h = x
            for k in range(last + 1):  # order k is computed once, also when only a later order is kept
                y = self.path(k, h)
                if keep[k]:
                    out = out + self.drop_paths[k].weigh(self.beta * y)
                h = F.relu(y)
        else:
            for k, kept in enumerate(keep):
                if kept:
                    out = out + self.drop_paths[k].weigh(self.beta * self.path(k, x))
        return F.relu(out)  # not in place: with every path dropped, out is x

    def extra_repr(self) -> str:
        return f"kind={self.kind}, beta={self.beta}"


class Stem(nn.Module):
    """Inception-v4's stem (arXiv 1602.07261, Figure 3) as the release builds it: 3 -> 384 channels, 299 -> 35.

    The same layers as ``cnnzoo.models.inception_v4.Stem``, but the release's
    names, and its last concatenation puts the pooled half first (Inception-v4's
    puts the conv first): every layer reading the 384 channels has its weights
    in that order, so the release's weights need this stem.
    """

    def __init__(self, in_chans: int = 3, conv_block: Callable[..., nn.Module] = ConvBnAct):
        super().__init__()
        self.conv1 = nn.Sequential(conv_block(in_chans, 32, 3, stride=2), conv_block(32, 32, 3),
                                   conv_block(32, 64, 3, padding=1))
        self.conv1_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv1_branch = conv_block(64, 96, 3, stride=2)
        self.conv2_short = nn.Sequential(conv_block(160, 64, 1), conv_block(64, 96, 3))
        self.conv2_long = nn.Sequential(conv_block(160, 64, 1), conv_block(64, 64, (7, 1), padding=(3, 0)),
                                        conv_block(64, 64, (1, 7), padding=(0, 3)), conv_block(64, 96, 3))
        self.conv2_pool_branch = nn.MaxPool2d(3, stride=2)
        self.conv2_branch = conv_block(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # N x 64 x 147 x 147 at 299
        x = torch.cat((self.conv1_pool_branch(x), self.conv1_branch(x)), 1)  # N x 160 x 73 x 73
        x = torch.cat((self.conv2_short(x), self.conv2_long(x)), 1)  # N x 192 x 71 x 71
        return torch.cat((self.conv2_pool_branch(x), self.conv2_branch(x)), 1)  # N x 384 x 35 x 35


def reduction_a(conv_block: Callable[..., nn.Module]) -> Concat:
    """Reduction-A (1602.07261 Table 1, k=256, l=256, m=384, n=384): 35 -> 17, 384 -> 1152 channels."""
    return Concat(
        path0=nn.Sequential(conv_block(384, 256, 1), conv_block(256, 256, 3, padding=1),
                            conv_block(256, 384, 3, stride=2)),
        path1=conv_block(384, 384, 3, stride=2),
        path2=nn.MaxPool2d(3, stride=2),
    )


def reduction_b(conv_block: Callable[..., nn.Module]) -> Concat:
    """Reduction-B, the release's widths: 17 -> 8, 1152 -> 256 + 256 + 384 + 1152 = 2048 channels."""
    return Concat(
        path0=nn.Sequential(conv_block(1152, 256, 1), conv_block(256, 256, 3, padding=1),
                            conv_block(256, 256, 3, stride=2)),
        path1=nn.Sequential(conv_block(1152, 256, 1), conv_block(256, 256, 3, stride=2)),
        path2=nn.Sequential(conv_block(1152, 256, 1), conv_block(256, 384, 3, stride=2)),
        path3=nn.MaxPool2d(3, stride=2),
    )


class PolyNet(ImageClassifier):
    """Stem, stages A, B, C of PolyInception modules (with reductions between), global pool, dropout, FC.

    Args:
        depths: modules in stages A, B, C (Very Deep PolyNet: 10-20-10; the ablations 3-6-3 and 6-12-6).
        kinds: per stage, one kind of ``KINDS`` for every module, or a sequence of kinds repeated in order
            over the stage's modules (``("poly-3", "2-way")``: poly-3, 2-way, poly-3, ...).
        beta: residual scale of every path: one number, or one per module of the network.
        poly_sharing: ``"full"`` (F one block, the paper's text) or ``"convs"`` (the release), see
            ``PolyInception``.
        stem: builds the stem from (in_chans, conv_block); it must give 384 channels.
        drop_rate: dropout before the FC (the release: 0.2).
        drop_path: stochastic paths, survival p_l over the modules l = 1..L (every path of module l
            gets p_l); ``create_model`` builds it from the ``drop_path_*`` keywords.
        eps: BN epsilon (the release: PyTorch's 1e-5).
        norm_layer: ``norm_layer(channels, eps=eps)`` builds every normalisation layer (default: BN).
    """

    def __init__(
        self,
        depths: tuple[int, int, int] = VERY_DEEP_DEPTHS,
        kinds: Sequence[str | Sequence[str]] = VERY_DEEP_KINDS,
        beta: float | Sequence[float] = 0.3,
        poly_sharing: PolySharing = "full",
        stem: Callable[..., nn.Module] = Stem,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path: DropPathSpec | None = None,
        eps: float = 1e-5,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        if len(depths) != 3 or min(depths) < 1:
            raise ValueError(f"depths must be three module counts >= 1 (stages A, B, C), got {depths}")
        if len(kinds) != 3:
            raise ValueError(f"kinds must give stages A, B, C a kind or a list of kinds each, got {kinds}")
        num_modules = sum(depths)
        betas = [beta] * num_modules if isinstance(beta, (int, float)) else list(beta)
        if len(betas) != num_modules:
            raise ValueError(f"beta must be one number or one per module ({num_modules}), got {len(betas)} values")
        conv_block = partial(ConvBnAct, eps=eps, norm_layer=norm_layer)
        gates = (drop_path or DropPathSpec()).gates(num_modules, owner=self)

        def stage(name: str, first: int, depth: int, kind: str | Sequence[str]) -> nn.Sequential:
            cycle = (kind,) if isinstance(kind, str) else tuple(kind)
            return nn.Sequential(*(
                PolyInception(cycle[i % len(cycle)], name, betas[first + i], gates[first + i], poly_sharing, eps,
                              norm_layer) for i in range(depth)))

        a, b, c = depths
        self.stem = stem(in_chans, conv_block)
        self.stage_a = stage("A", 0, a, kinds[0])
        self.reduction_a = reduction_a(conv_block)
        self.stage_b = stage("B", a, b, kinds[1])
        self.reduction_b = reduction_b(conv_block)
        self.stage_c = stage("C", a + b, c, kinds[2])
        self.num_features = 2048
        self.feature_info = [
            dict(num_chs=64, reduction=2, module="stem.conv1"), dict(num_chs=384, reduction=8, module="stage_a"),
            dict(num_chs=1152, reduction=16, module="stage_b"),
            dict(num_chs=self.num_features, reduction=32, module="stage_c"),
        ]
        # The release pools with a fixed 9 x 9 window (its map at 331); adaptive pooling is the same there
        # and also serves other input sizes.
        self.global_pool = SelectAdaptivePool2d("avg")
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

    def modules_in_order(self) -> list[PolyInception]:
        """The PolyInception modules from stage A to stage C."""
        return [*self.stage_a, *self.stage_b, *self.stage_c]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stage_a(self.stem(x))  # N x 384 x 35 x 35 at 299 (39 x 39 at 331)
        x = self.stage_b(self.reduction_a(x))  # N x 1152 x 17 x 17 (19 x 19)
        return self.stage_c(self.reduction_b(x))  # N x 2048 x 8 x 8 (9 x 9)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x))
        return x if pre_logits else self.fc(x)


# Renaming Cadene's pretrainedmodels PolyNet. Its 2-way modules hold ``blocks.{j}`` with ``path{p}`` either a
# Sequential (``path0.{i}.conv``) or one conv (``path2.conv``) and ``conv2d``; its poly-3 modules hold
# flat shared convs ``path0_1x1 / path0_1x7 / ...`` with ``bn_blocks.{order}`` and ``conv2d_blocks.{order}``.
# Its paths are our Block35 / Block17 / Block8 branches in reverse order (longest first), so the final 1x1's
# input channels are reordered too. Widths of the release's paths in its concatenation order, per stage:
_RELEASED_CONCAT = {"a": (64, 32, 32), "b": (192, 192), "c": (256, 192)}
_POLY_CONVS = {"path0_1x1": "branch1.0", "path0_1x7": "branch1.1", "path0_7x1": "branch1.2",
               "path0_1x3": "branch1.1", "path0_3x1": "branch1.2", "path1": "branch0"}
_MULTIWAY_PATH = re.compile(r"^(stage_(\w)\.\d+\.blocks\.\d+\.)path(\d)\.(?:(\d+)\.)?(conv|bn)\.(.+)$")
_MULTIWAY_CONV2D = re.compile(r"^(stage_\w\.\d+\.blocks\.\d+\.)conv2d\.(conv|bn)\.(.+)$")
_POLY_PATH = re.compile(r"^(stage_\w\.\d+\.)(path0_\w+|path1)\.(conv|bn_blocks\.\d+)\.(.+)$")
_POLY_CONV2D = re.compile(r"^(stage_\w\.\d+\.)conv2d_blocks\.(\d+)\.(conv|bn)\.(.+)$")


def _rename_pretrainedmodels(key: str) -> str:
    if key.startswith("last_linear."):
        return "fc." + key[len("last_linear."):]
    if m := _MULTIWAY_PATH.match(key):
        prefix, stage, path, index, layer, rest = m.groups()
        branch = len(_RELEASED_CONCAT[stage]) - 1 - int(path)
        return f"{prefix}branch{branch}{f'.{index}' if index else ''}.{'bn.0' if layer == 'bn' else layer}.{rest}"
    if m := _MULTIWAY_CONV2D.match(key):
        prefix, layer, rest = m.groups()
        return f"{prefix}conv2d.{'bn.0' if layer == 'bn' else layer}.{rest}"
    if m := _POLY_PATH.match(key):
        prefix, conv, layer, rest = m.groups()
        return f"{prefix}blocks.0.{_POLY_CONVS[conv]}.{layer.replace('bn_blocks', 'bn')}.{rest}"
    if m := _POLY_CONV2D.match(key):
        prefix, order, layer, rest = m.groups()
        return f"{prefix}blocks.0.conv2d.{order}.{'bn.0' if layer == 'bn' else layer}.{rest}"
    return key  # stem and reductions: same names


def _reverse_concat(key: str, value: Tensor) -> Tensor:
    """A final 1x1's weight with its input channels in our branch order (the release's, reversed)."""
    if not re.search(r"\.conv2d(_blocks\.\d+)?\.conv\.weight$", key):
        return value
    chunks = value.split(list(_RELEASED_CONCAT[key[len("stage_")]]), dim=1)
    return torch.cat(chunks[::-1], 1)


@register_converter(PolyNet, "pretrainedmodels")
def _from_pretrainedmodels(state_dict: dict) -> dict:
    return {_rename_pretrainedmodels(k): _reverse_concat(k, v) for k, v in state_dict.items()}


def __getattr__(name: str):
    # Deprecated location, kept for one release: initialization by insertion is a training procedure and
    # lives in cnnzoo.engine.insertion. Imported by name here so that models/ never imports engine/ itself.
    if name == "insert_init":
        import importlib
        import warnings

        warnings.warn("cnnzoo.models.polynet.insert_init moved to cnnzoo.engine.insertion.insert_init",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("cnnzoo.engine.insertion").insert_init
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def very_deep_betas(residual_scale: float | str, drop_path: DropPathSpec | None) -> float | tuple[float, ...]:
    """The paths' scale for Very Deep PolyNet: ``"released"`` (1.0 falling to 0.7) or one number (the paper: 0.3).

    The released factors already hold the evaluation-time scaling of stochastic paths, so with stochastic
    paths on, the gates must not scale a second time at evaluation: that needs ``drop_path_inverted=True``
    (the gates scale by 1/p_l in training instead, and evaluation uses the released factors alone).
    """
    if residual_scale == "released":
        if drop_path is not None and drop_path.rate > 0 and not drop_path.inverted:
            raise ValueError("the released residual scales (1.0 falling to 0.7) already include stochastic paths'"
                             " evaluation scaling, which drop_path_rate would apply twice: add"
                             f" drop_path_inverted=True, or use residual_scale={PAPER_BETA} (the paper's beta)")
        return RELEASED_BETAS
    if isinstance(residual_scale, (int, float)) and not isinstance(residual_scale, bool) and 0 < residual_scale <= 1:
        return float(residual_scale)
    raise ValueError(f"residual_scale must be 'released' or a number in (0, 1], got {residual_scale!r}")


@register_model(**VERY_DEEP, params=95_366_600, macs=34.7)
def polynet(residual_scale: float | str = "released", **kwargs) -> PolyNet:
    """Very Deep PolyNet in the released layout (Cadene's pretrainedmodels port of the Caffe release).

    ``residual_scale``: ``"released"`` (the default, which the released weights need) or the paper's 0.3
    (``configs/polynet_imagenet.yaml`` trains with it).
    """
    betas = very_deep_betas(residual_scale, kwargs.get("drop_path"))
    return PolyNet(VERY_DEEP_DEPTHS, VERY_DEEP_KINDS, betas, poly_sharing="convs", **kwargs)


@register_model(**VERY_DEEP, params=77_213_000)
def polynet_shared(residual_scale: float | str = PAPER_BETA, **kwargs) -> PolyNet:
    """Very Deep PolyNet as the paper's text has it: F fully shared by the orders of each poly-3, beta = 0.3."""
    betas = very_deep_betas(residual_scale, kwargs.get("drop_path"))
    return PolyNet(VERY_DEEP_DEPTHS, VERY_DEEP_KINDS, betas, poly_sharing="full", **kwargs)


# The ablation networks (Section 3.2), registered as polynet_<depths>[_<stage>_<kind>]: the depths without
# separators (363 = IR 3-6-3), then the stage whose modules are all replaced and the kind without its hyphen.
# polynet_363 is the IR 3-6-3 baseline itself (every module 1-way, i.e. the Inception-ResNet unit), and
# polynet_363_b_poly3 is IR 3-6-3 with its six stage-B units replaced by poly-3 modules. All use beta = 0.3
# and poly-N with F fully shared.
SINGLE_STAGE_KINDS = ("2-way", "3-way", "poly-2", "poly-3", "mpoly-2", "mpoly-3")
# The paper then mixes designs within stage B of IR 6-12-6: (3-way, mpoly-3, 2-way) repeated. This order is our
# reading of the paper; any other mix is one call: PolyNet((6, 12, 6), ("1-way", (...), "1-way")).
MIXED_B = ("3-way", "mpoly-3", "2-way")


def _register_ablation(depths: tuple[int, int, int], stage: str | None, kind: str | Sequence[str],
                       label: str, about: str) -> None:
    kinds = tuple(kind if s == stage else "1-way" for s in "ABC")
    name = f"polynet_{''.join(map(str, depths))}" + (f"_{stage.lower()}_{label}" if stage else "")

    def entry(**kwargs) -> PolyNet:
        return PolyNet(depths, kinds, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"IR {'-'.join(map(str, depths))} {about}."
    register_model(**ABLATION)(entry)


_register_ablation((3, 6, 3), None, "1-way", "", "(Inception-ResNet units only), the ablations' baseline")
for _stage in "ABC":
    for _kind in SINGLE_STAGE_KINDS:
        _register_ablation((3, 6, 3), _stage, _kind, _kind.replace("-", ""),
                           f"with every stage-{_stage} module a {_kind} PolyInception")
_register_ablation((6, 12, 6), None, "1-way", "", "(Inception-ResNet units only), the mixed designs' baseline")
_register_ablation((6, 12, 6), "B", MIXED_B, "mixed", "with stage B mixing 3-way, mpoly-3 and 2-way in turn")
