"""The textbook comparisons behind these architectures, measured on real modules (``cnnzoo explain TOPIC``).

Each topic builds the competing designs from the modules the families use
(GoogLeNet's ``Inception``, ``SeparableConv2d``, DenseNet's ``DenseBlock``,
PolyNet's ``PolyInception``; a plain ``nn.Conv2d`` stack where the design is
nothing more), on the meta device (nothing is allocated), and counts their
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

from ..layers import SeparableConv2d
from ..models.densenet import DenseBlock
from ..models.googlenet import Inception, InceptionNaive
from ..models.polynet import PolyInception
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


TOPICS: dict[str, tuple[Callable[..., Explanation], str]] = {
    "3x3": (conv_stacks, "two 3x3 convs against one 5x5 (and three against one 7x7): VGG"),
    "inception": (inception_reductions, "Inception module (3a) with and without 1x1 reductions: GoogLeNet"),
    "separable": (separable, "depthwise separable against full convolution: Xception"),
    "densenet": (densenet_growth, "channel growth through a dense block: DenseNet"),
    "poly": (poly_vs_way, "poly-2 against 2-way at equal cost: PolyNet"),
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

