"""The textbook comparisons behind these architectures, measured on real modules (``cnnzoo explain TOPIC``).

Each topic builds the competing designs from the modules the families use
(GoogLeNet's ``Inception``, ``SeparableConv2d``, DenseNet's ``DenseBlock``,
PolyNet's ``PolyInception``, MobileNet's ``DepthwiseSeparableBlock``,
ShuffleNet's ``ShuffleUnit``, SqueezeNet's ``Fire``, ResNeXt's ``Bottleneck``;
a plain ``nn.Conv2d`` stack where the design is nothing more), on the meta
device (nothing is allocated), and counts their
parameters and MACs with the same counter as every model
(``complexity.trace``). No formula is typed in: the numbers are what the
modules have, and the tests check them against the hand derivations quoted in
each docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..layers import ConvBnAct, SeparableConv2d
from ..models.densenet import DenseBlock
from ..models.googlenet import Inception, InceptionNaive
from ..models.mobilenet import DepthwiseSeparableBlock
from ..models.polynet import PolyInception
from ..models.resnet import Bottleneck
from ..models.resnext import TABLE_2
from ..models.shufflenet import ShuffleUnit
from ..models.squeezenet import Fire
from .complexity import _MetaShortcuts, count_params, share, trace
from .report import Column, integer, render


@dataclass
class Explanation:
    topic: str
    title: str
    columns: list[Column]
    rows: list[dict]
    summary: list[str]  # sentences with the computed comparison


def _measure(module: nn.Module, in_chs: int, size: int) -> tuple[int, int, tuple]:
    """Params, MACs and output shape of ``module`` for one in_chs x size x size input."""
    tr = trace(module, (in_chs, size, size))
    return count_params(module), tr.total.macs, tr.total.output_shape


def _receptive_field(module: nn.Module) -> int:
    """Receptive field of a plain stack of convs and pools (each layer widens it by (k - 1) x the stride so far)."""
    field, jump = 1, 1
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            field, jump = field + (k - 1) * jump, jump * s
    return field


_COST = [Column("design", "design", left=True), Column("params", "params", integer),
         Column("macs", "MACs", integer)]


def conv_stacks(channels: int = 256, size: int = 56) -> Explanation:
    """Stacked 3x3 convs against one big kernel (VGG, Section 2.3), C channels in and out, no biases.

    Two 3x3 see 5x5 with 2 x 9 C^2 = 18 C^2 weights against 25 C^2; three 3x3
    see 7x7 with 27 C^2 against 49 C^2; MACs are weights x H x W. Each stack
    also has a ReLU between its convs: more non-linearity for less cost.
    """
    def stack(n: int, k: int) -> nn.Sequential:
        layers = []
        for _ in range(n):
            layers += [nn.Conv2d(channels, channels, k, padding=k // 2, bias=False), nn.ReLU()]
        return nn.Sequential(*layers)

    designs = {"one 5x5": stack(1, 5), "two 3x3": stack(2, 3), "one 7x7": stack(1, 7), "three 3x3": stack(3, 3)}
    rows = []
    for name, module in designs.items():
        params, macs, _ = _measure(module, channels, size)
        rows.append(dict(design=name, field=_receptive_field(module), relus=len(module) // 2, params=params, macs=macs))
    two, five, three, seven = (rows[i]["params"] for i in (1, 0, 3, 2))
    return Explanation(
        "3x3", f"Stacked 3x3 convs against one large kernel: {channels} channels in and out, {size}x{size}, no bias",
        [_COST[0], Column("field", "receptive field"), Column("relus", "ReLUs"), *_COST[1:]], rows,
        [f"Two 3x3 convs see the same {rows[1]['field']}x{rows[1]['field']} field as one 5x5 with "
         f"{share(two, five):.0%} of its parameters and MACs ({two // channels**2} C^2 against {five // channels**2} C^2).",
         f"Three 3x3 convs replace a 7x7 with {share(three, seven):.0%} of its cost "
         f"({three // channels**2} C^2 against {seven // channels**2} C^2), and add two more ReLUs."],
    )


# GoogLeNet Table 1, inception (3a): 192 channels in at 28x28.
INCEPTION_3A = dict(in_chs=192, ch1x1=64, ch3x3red=96, ch3x3=128, ch5x5red=16, ch5x5=32, pool_proj=32)


def inception_reductions(size: int = 28, in_chs: int = 192, ch1x1: int = 64, ch3x3red: int = 96,
                         ch3x3: int = 128, ch5x5red: int = 16, ch5x5: int = 32, pool_proj: int = 32) -> Explanation:
    """GoogLeNet's Inception module with and without its 1x1 reductions (Section 4, Figure 2), inception (3a).

    With reductions (biases included): 1x1 192*64, 3x3 192*96 + 96*128*9,
    5x5 192*16 + 16*32*25, pool proj 192*32 weights = 163,328 (MACs: x 28*28
    = 128,049,152). Naive: 192*64 + 192*128*9 + 192*32*25 = 387,072 weights,
    and the pooling branch passes all 192 channels, so 416 leave, not 256.
    """
    with_red = Inception(in_chs, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
    naive = InceptionNaive(in_chs, ch1x1, ch3x3, ch5x5)
    rows = []
    for name, module in (("naive (no 1x1 reductions)", naive), ("with 1x1 reductions", with_red)):
        params, macs, out = _measure(module, in_chs, size)
        rows.append(dict(design=name, out_chs=out[1], params=params, macs=macs))
    naive_row, red_row = rows
    return Explanation(
        "inception", f"Inception module (3a) with and without 1x1 reductions: {in_chs} channels in, {size}x{size}",
        [_COST[0], Column("out_chs", "channels out"), *_COST[1:]], rows,
        [f"The 1x1 reductions cut the module to {share(red_row['params'], naive_row['params']):.0%} of the naive "
         f"parameters and {share(red_row['macs'], naive_row['macs']):.0%} of its MACs,",
         f"and keep the output at {red_row['out_chs']} channels: the naive module's pooling branch passes all "
         f"{in_chs} input channels through, so {naive_row['out_chs']} leave and every later module grows."],
    )


def separable(channels: int = 728, size: int = 19) -> Explanation:
    """A depthwise separable conv against a full 3x3 conv (Xception's middle flow: 728 channels, 19x19).

    Full: C*C*9 = 4,769,856 weights. Separable: depthwise C*9 = 6,552 plus
    pointwise C*C = 529,984, together 536,536: 1/9 + 1/C of the full conv.
    """
    full = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    sep = SeparableConv2d(channels, channels, 3)
    rows = []
    for name, module in (("full 3x3 conv", full), ("depthwise 3x3", sep.depthwise), ("pointwise 1x1", sep.pointwise),
                         ("depthwise separable (both)", sep)):
        params, macs, _ = _measure(module, channels, size)
        rows.append(dict(design=name, params=params, macs=macs))
    return Explanation(
        "separable", f"Depthwise separable against full 3x3 convolution: {channels} channels, {size}x{size}",
        _COST, rows,
        [f"The separable conv costs {share(rows[3]['params'], rows[0]['params']):.1%} of the full conv's parameters "
         f"and MACs, {rows[0]['params'] / rows[3]['params']:.1f}x fewer;",
         f"its pointwise 1x1 holds {share(rows[2]['params'], rows[3]['params']):.1%} of them: "
         "the spatial filtering is almost free once it is done per channel."],
    )


def densenet_growth(in_chs: int = 64, growth: int = 32, num_layers: int = 6, size: int = 56) -> Explanation:
    """Channel growth through a DenseNet-BC block (DenseNet-121's first block: k0 = 64, k = 32, 6 layers, 56x56).

    Layer l reads k0 + (l - 1) k channels: 64, 96, ..., 224, and the block
    leaves 64 + 6 * 32 = 256. Layer 1 holds 2*64 + 64*128 + 2*128 + 128*32*9
    = 45,440 parameters and 56*56*(64*128 + 128*32*9) = 141,295,616 MACs.
    """
    block = DenseBlock(num_layers, in_chs, growth)
    tr = trace(block, (in_chs, size, size))
    macs = tr.module_macs()
    rows = [dict(design=f"layer {i + 1}", in_chs=layer.norm1.num_features, new=growth,
                 out_chs=layer.norm1.num_features + growth, params=count_params(layer), macs=macs[name])
            for i, (name, layer) in enumerate(block.items())]
    out_chs = tr.total.output_shape[1]
    return Explanation(
        "densenet", f"DenseNet-BC block: k0 = {in_chs}, growth k = {growth}, {num_layers} layers, {size}x{size}",
        [_COST[0], Column("in_chs", "channels in"), Column("new", "new"), Column("out_chs", "concat out"),
         *_COST[1:]], rows,
        [f"Each layer adds only k = {growth} channels, yet reads all earlier ones: its input grows from "
         f"{rows[0]['in_chs']} to {rows[-1]['in_chs']}, and the block leaves {out_chs} = {in_chs} + "
         f"{num_layers} x {growth} channels.",
         f"The 1x1 bottleneck (to {4 * growth}) keeps each 3x3 conv's cost fixed; the growing input only "
         f"widens the cheap 1x1: layer {num_layers} costs {share(rows[-1]['macs'], rows[0]['macs']):.2f}x layer 1."],
    )


def poly_vs_way(size: int = 35) -> Explanation:
    """PolyInception modules at equal cost (PolyNet, Section 3): poly-2 I + F + F^2 against 2-way I + F + G.

    F is PolyNet's stage-A block (Inception-ResNet-v2's Block35 at 384 channels,
    a BN after every conv): weights 384*32 + (384*32 + 32*32*9) + (384*32 +
    32*48*9 + 48*64*9) + 128*384 = 136,704 plus 2 x (32 + 32 + 32 + 32 + 48 + 64
    + 384) = 1,248 BN parameters, 137,952 in all; 136,704 * 35 * 35 =
    167,462,400 MACs per evaluation. Poly-2 and 2-way both evaluate two blocks
    (equal MACs); poly-2 shares one block's weights (F fully shared, its BNs too).
    """
    designs = {
        "2-way   I + F + G": "2-way",
        "poly-2  I + F + F^2": "poly-2",
        "mpoly-2 I + F + GF": "mpoly-2",
        "3-way   I + F + G + H": "3-way",
        "poly-3  I + F + F^2 + F^3": "poly-3",
        "mpoly-3 I + F + GF + HGF": "mpoly-3",
    }
    rows = []
    for name, kind in designs.items():
        module = PolyInception(kind, "A", poly_sharing="full")
        params, macs, _ = _measure(module, module.blocks[0].conv2d.conv.out_channels, size)
        rows.append(dict(design=name, evaluations=len(module.drop_paths), blocks=len(module.blocks),
                         params=params, macs=macs))
    way, poly = rows[0], rows[1]
    return Explanation(
        "poly", f"PolyInception modules over PolyNet's stage-A blocks F, G, H: 384 channels, {size}x{size}",
        [_COST[0], Column("evaluations", "block evaluations"), Column("blocks", "distinct blocks"), *_COST[1:]],
        rows,
        [f"Poly-2 and 2-way cost the same ({poly['macs']:,} against {way['macs']:,} MACs: two block "
         f"evaluations each), but poly-2 has {share(poly['params'], way['params']):.0%} of the parameters:",
         "its second-order path reuses F on F(x), a deeper composition at no extra weights; "
         "mpoly-2 spends 2-way's weights on the same cascade."],
    )


def mobilenet(channels: int = 512, size: int = 14) -> Explanation:
    """A standard 3x3 conv layer against MobileNet's depthwise separable layer (Section 3.1), M = N = 512, 14x14.

    Both carry their batch norms and ReLUs (Fig. 3). Standard: 3*3*M*N
    weights + 2N BN = 2,360,320 parameters, 3*3*M*N*14*14 = 462,422,016 MACs.
    Separable: 3*3*M depthwise + 2M BN + M*N pointwise + 2N BN = 268,800
    parameters, (3*3*M + M*N)*14*14 = 52,283,392 MACs. The cost ratio (Eq. 5)
    is (9M + MN) / 9MN = 1/N + 1/9.
    """
    standard = ConvBnAct(channels, channels, 3, stride=1, padding=1)
    block = DepthwiseSeparableBlock(channels, channels, stride=1)
    rows = []
    for name, module in (("standard 3x3 conv", standard), ("depthwise 3x3", block.conv.depthwise),
                         ("pointwise 1x1", block.conv.pointwise), ("depthwise separable (both)", block)):
        params, macs, _ = _measure(module, channels, size)
        rows.append(dict(design=name, params=params, macs=macs))
    full, sep = rows[0], rows[3]
    return Explanation(
        "mobilenet", f"Standard 3x3 conv against depthwise separable (MobileNet): M = N = {channels}, {size}x{size}, "
        "BN and ReLU included", _COST, rows,
        [f"The depthwise separable layer costs {share(sep['macs'], full['macs']):.3f} of the standard layer's MACs "
         f"({full['macs'] / sep['macs']:.1f}x fewer): the paper's 1/N + 1/9 = {1 / channels + 1 / 9:.3f} (Eq. 5),",
         f"and {share(sep['params'], full['params']):.3f} of its parameters (the BN parameters aside, the same "
         f"ratio); {share(rows[2]['macs'], sep['macs']):.0%} of its MACs are in the 1x1 pointwise conv "
         "(95% across the network: Table 2)."],
    )


def _groups_responding(unit: ShuffleUnit, channels: int, groups: int) -> int:
    """Output groups of ``unit`` that change when only its first input group changes.

    Every weight is set to 1 (so no two paths can cancel and no ReLU cuts one
    off): a group responds exactly when some path connects it to the first
    input group. Runs on the CPU, on a 4x4 map: the answer does not depend on
    the size.
    """
    with torch.device("cpu"):
        unit = unit.to_empty(device="cpu").eval()
        with torch.no_grad():
            for p in unit.parameters():
                p.fill_(1.0)
            for b in unit.buffers():
                b.fill_(1.0 if b.dtype.is_floating_point else 0)  # BN running var 1 (mean 1: harmless)
            x = torch.zeros(1, channels, 4, 4)
            y = x.clone()
            y[:, : channels // groups] = 1.0
            changed = (unit(y) - unit(x)).abs().sum((0, 2, 3)).view(groups, -1).sum(1)
    return int((changed > 0).sum())


def shufflenet(size: int = 28, channels: int = 240, groups: int = 3) -> Explanation:
    """A ShuffleNet unit with and without its channel shuffle (Fig. 1, Table 3): 240 channels, g = 3, 28x28.

    The shuffle is a permutation: both cost the same. 1x1 GConv 240*60/3,
    3x3 DWConv 60*9, 1x1 GConv 60*240/3 = 10,140 weights, plus BN 2*(60 + 60 +
    240) = 720: 10,860 parameters; 10,140 * 28 * 28 = 7,949,760 MACs. What
    differs is the flow: without the shuffle the stacked group convolutions
    keep each group to itself, so a change in one input group reaches 1 of
    the 3 output groups; with it, all 3.
    """
    rows = []
    for name, shuffle in (("with channel shuffle", True), ("without channel shuffle", False)):
        unit = ShuffleUnit(channels, channels, groups=groups, channel_shuffle=shuffle)
        params, macs, _ = _measure(unit, channels, size)
        rows.append(dict(design=name, params=params, macs=macs, responding=_groups_responding(unit, channels, groups)))
    with_, without = rows
    return Explanation(
        "shufflenet", f"ShuffleNet unit with and without channel shuffle: {channels} channels, g = {groups}, "
        f"{size}x{size}", [*_COST, Column("responding", f"output groups reached by input group 1 (of {groups})")],
        rows,
        [f"The shuffle costs nothing: {with_['params']:,} parameters and {with_['macs']:,} MACs either way.",
         f"It changes what the unit can mix: a change in one input group reaches {with_['responding']} of the "
         f"{groups} output groups with it, {without['responding']} without it (Fig. 1);",
         "Table 3 measures what that buys: lower error at every size and group count, at the same cost."],
    )


def squeezenet(size: int = 27) -> Explanation:
    """SqueezeNet's fire8 against a 3x3 conv with its 512 outputs (Section 3.1), 384 channels in, 27x27.

    3x3 conv: 384*512*9 + 512 = 1,769,984 parameters. Strategy 1 alone (half
    the filters 1x1, no squeeze): 384*256 + 256 + 384*256*9 + 256 = 983,552.
    Fire (strategies 1 and 2: squeeze to 64 first): 384*64 + 64 + 64*256 + 256
    + 64*256*9 + 256 = 188,992. MACs are the weights x 27 * 27 (biases aside).
    """
    conv = nn.Conv2d(in_chs := 384, 512, 3, padding=1)
    expand_only = Fire(in_chs, in_chs, 256, 256)
    expand_only.squeeze = nn.Identity()  # the expand layers read the input directly
    fire = Fire(in_chs, 64, 256, 256)
    rows = []
    for name, module in (("3x3 conv, 512 filters", conv), ("expand only: 256 1x1 + 256 3x3 (strategy 1)", expand_only),
                         ("fire: squeeze 64, then expand (strategies 1+2)", fire)):
        params, macs, out = _measure(module, in_chs, size)
        rows.append(dict(design=name, out_chs=out[1], params=params, macs=macs))
    conv_row, expand_row, fire_row = rows
    return Explanation(
        "squeezenet", f"SqueezeNet's fire8 against a 3x3 conv: {in_chs} channels in, 512 out, {size}x{size}",
        [_COST[0], Column("out_chs", "channels out"), *_COST[1:]], rows,
        [f"Replacing half the 3x3 filters by 1x1 (strategy 1) leaves "
         f"{share(expand_row['params'], conv_row['params']):.0%} of the 3x3 conv's parameters; squeezing the input to 64 channels first (strategy 2) leaves "
         f"{share(fire_row['params'], conv_row['params']):.1%},",
         f"{conv_row['params'] / fire_row['params']:.1f}x fewer for the same {fire_row['out_chs']} output channels."],
    )


def resnext(size: int = 56) -> Explanation:
    """ResNeXt's cardinality against width at equal cost (Table 2): conv2's block, 256 channels in and out, 56x56.

    C groups of width d: 1x1 256 -> Cd, grouped 3x3 Cd -> Cd (C*d*d*9), 1x1
    Cd -> 256: weights C * (256d + 9d^2 + 256d), about 70k for each row
    (1x64d: 69,632; 32x4d: 70,144); BN adds 2 * (2Cd + 256). MACs are the
    weights x 56 * 56.
    """
    rows = []
    for c, d in TABLE_2.items():
        block = Bottleneck(256, 64, groups=c, base_width=d)
        params, macs, _ = _measure(block, 256, size)
        rows.append(dict(design=f"{c}x{d}d", cardinality=c, width=d, group_width=c * d, params=params, macs=macs))
    low, high = min(r["params"] for r in rows), max(r["params"] for r in rows)
    return Explanation(
        "resnext", f"ResNeXt blocks at equal cost (Table 2): cardinality C x width d, 256 channels, {size}x{size}",
        [_COST[0], Column("cardinality", "C"), Column("width", "d"), Column("group_width", "C x d"), *_COST[1:]],
        rows,
        [f"Every template costs within {high / low - 1:.1%} of the others ({low:,} to {high:,} parameters): "
         "more groups buy narrower ones,",
         "yet the paper's error falls as C grows (ResNeXt-50, Table 3: 23.9% top-1 at 1x64d, 22.2% at 32x4d): "
         "cardinality, not width, is what pays at equal cost."],
    )


TOPICS: dict[str, tuple[Callable[..., Explanation], str]] = {
    "3x3": (conv_stacks, "two 3x3 convs against one 5x5 (and three against one 7x7): VGG"),
    "inception": (inception_reductions, "Inception module (3a) with and without 1x1 reductions: GoogLeNet"),
    "separable": (separable, "depthwise separable against full convolution: Xception"),
    "densenet": (densenet_growth, "channel growth through a dense block: DenseNet"),
    "poly": (poly_vs_way, "poly-2 against 2-way at equal cost: PolyNet"),
    "mobilenet": (mobilenet, "standard 3x3 conv against depthwise separable: MobileNet"),
    "shufflenet": (shufflenet, "a unit with and without channel shuffle: ShuffleNet"),
    "squeezenet": (squeezenet, "fire module against a 3x3 conv: SqueezeNet"),
    "resnext": (resnext, "cardinality against width at equal cost: ResNeXt"),
}


def explain(topic: str, **options) -> Explanation:
    """Build and measure the designs of ``topic`` (one of ``TOPICS``); ``options`` go to its function."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; choose one of {', '.join(TOPICS)}")
    with torch.device("meta"), _MetaShortcuts():
        return TOPICS[topic][0](**options)


def format_explanation(e: Explanation, fmt: str = "text") -> str:
    table = render(e.columns, e.rows, fmt)
    if fmt in ("csv", "json"):
        return table
    return "\n\n".join([e.title, table, "\n".join(e.summary)])

