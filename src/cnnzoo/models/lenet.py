"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998.

(No arXiv id.) Section II.B: a 32x32 single-channel image (the 28x28 MNIST
digit centred in a 32x32 field), then

    layer  maps  size   what                                           trainable params
    C1     6     28x28  5x5 conv                                       156
    S2     6     14x14  2x2 subsampling                                12
    C3     16    10x10  5x5 conv, partly connected to S2 (Table I)     1,516
    S4     16    5x5    2x2 subsampling                                32
    C5     120   1x1    5x5 conv (a full connection at 32x32 input)    48,120
    F6     84           full connection                                10,164
    output 10           Euclidean RBF units                            (fixed)

60,000 trainable parameters in all. Every unit up to F6 is squashed by
f(a) = 1.7159 tanh(2a/3) (Appendix A). The two paper-specific layers are options:

- ``c3_table=True``: C3 map j sees only the S2 maps in column j of Table I
  (``C3_TABLE``), 1,516 parameters instead of 2,416 for a full connection. The
  paper's reasons: fewer connections, and broken symmetry, since different
  maps get different inputs and so learn different features.
- ``trainable_subsampling=True``: an S unit adds its four inputs, multiplies
  the sum by a trainable coefficient, adds a trainable bias (one pair per
  map) and squashes the result. The default is a plain 2x2 average pool.

Deliberate deviation: the output layer is linear (84 -> classes, 850
parameters for 10), not the paper's RBF units. An RBF unit outputs
sum_j (x_j - w_ij)^2 = |x|^2 - 2 w_i.x + |w_i|^2, whose ranking of the classes
is that of the affine map 2 w_i.x - |w_i|^2, since |x|^2 is the same for every
class; but its w_i are fixed, hand-drawn 7x12 bitmaps of the characters, that
exist only for the paper's character set, and go with its own MAP loss. A
linear layer learns its weights, trains with cross-entropy, and can be reset to
any number of classes (``reset_classifier``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.fx
from torch import Tensor, nn

from ..layers import SelectAdaptivePool2d, expect_map_size
from ..registry import register_model
from .base import ImageClassifier

PAPER = dict(paper="Gradient-Based Learning Applied to Document Recognition", input_size=(1, 32, 32),
             num_classes=10, fixed_input_size=True,
             # Section II.B: background -0.1, ink 1.175, i.e. (p - 0.1 / 1.275) / (1 / 1.275) for ink p in [0, 1].
             mean=(0.1 / 1.275,), std=(1 / 1.275,))

torch.fx.wrap("expect_map_size")  # a shape check: symbolic tracing keeps it as one call

# Table I: for each of C3's 16 maps (the table's columns), the S2 maps it is connected to.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),  # 0-5: three contiguous maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),  # 6-11: four contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 12-14: four, not contiguous
    (0, 1, 2, 3, 4, 5),  # 15: all six
)


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3, so that f(1) = 1 and f(-1) = -1."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(x * (2 / 3))


class Subsampling(nn.Module):
    """S2 / S4: 2x2 non-overlapping subsampling of each map.

    ``trainable=False``: the 2x2 average. ``trainable=True`` (the paper): the sum of the four
    inputs times a trainable coefficient plus a trainable bias, per map, then the squashing function.
    """

    def __init__(self, channels: int, trainable: bool = False, act_layer: Callable[[], nn.Module] = ScaledTanh):
        super().__init__()
        self.pool = nn.AvgPool2d(2, stride=2)
        if trainable:
            self.weight = nn.Parameter(torch.empty(channels))
            self.bias = nn.Parameter(torch.empty(channels))
            self.act = act_layer()
        else:
            self.weight = self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)  # N x C x H/2 x W/2
        if self.weight is None:
            return x
        return self.act(4 * x * self.weight[:, None, None] + self.bias[:, None, None])  # sum = 4 x average


class PartialConv2d(nn.Module):
    """A convolution in which output map j sees only the input maps ``connections[j]``.

    Maps with the same fan-in are computed together: their input maps are gathered
    into one tensor and convolved in groups, one group per output map. So every
    weight is a real parameter (no masked-out zeros) and the MAC counter counts
    only the connections that exist.
    """

    def __init__(self, connections: Sequence[Sequence[int]], kernel_size: int):
        super().__init__()
        self.convs = nn.ModuleList()
        order = []
        for i, fan_in in enumerate(sorted({len(c) for c in connections})):
            maps = [j for j, c in enumerate(connections) if len(c) == fan_in]
            inputs = [m for j in maps for m in connections[j]]
            self.register_buffer(f"inputs{i}", torch.tensor(inputs), persistent=False)
            self.convs.append(nn.Conv2d(len(inputs), len(maps), kernel_size, groups=len(maps)))
            order += maps
        # the concatenated outputs come grouped by fan-in; this puts them back in map order
        self.register_buffer("unsort", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = [conv(x[:, getattr(self, f"inputs{i}")]) for i, conv in enumerate(self.convs)]
        return torch.cat(out, 1)[:, self.unsort]


class LeNet5(ImageClassifier):
    """C1-S2-C3-S4-C5-F6-output on a 32x32 image.

    Args:
        c3_table: connect C3 to S2 by Table I (the paper) instead of fully.
        trainable_subsampling: the paper's S2/S4 (coefficient, bias and squashing per map)
            instead of a plain 2x2 average.
        act_layer: the squashing function (default the paper's scaled tanh).
    """

    classifier = "output"

    def __init__(self, c3_table: bool = False, trainable_subsampling: bool = False,
                 act_layer: Callable[[], nn.Module] = ScaledTanh, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(in_chans, 6, 5)
        self.s2 = Subsampling(6, trainable_subsampling, act_layer)
        self.c3 = PartialConv2d(C3_TABLE, 5) if c3_table else nn.Conv2d(6, 16, 5)
        self.s4 = Subsampling(16, trainable_subsampling, act_layer)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.feature_info = [dict(num_chs=6, reduction=2, module="s2"), dict(num_chs=16, reduction=4, module="s4"),
                             dict(num_chs=120, reduction=32, module="c5")]
        # C5 is 1x1 at 32x32: the "pool" only flattens it (global_pool "" keeps the map)
        self.global_pool = SelectAdaptivePool2d("avg")
        self.f6 = nn.Linear(120, 84)
        self.act = act_layer()
        self.num_features = 120
        self.head_hidden_size = 84
        self.output = nn.Linear(84, num_classes)

        # Appendix A: uniform in +-2.4 / F_i, F_i the unit's fan-in (its biases drawn alike here).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 2.4 / (m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, Subsampling) and m.weight is not None:
                nn.init.uniform_(m.weight, -2.4 / 4, 2.4 / 4)
                nn.init.uniform_(m.bias, -2.4 / 4, 2.4 / 4)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.s2(self.act(self.c1(x)))  # N x 6 x 14 x 14 (C1: N x 6 x 28 x 28)
        x = self.s4(self.act(self.c3(x)))  # N x 16 x 5 x 5 (C3: N x 16 x 10 x 10)
        return self.act(self.c5(x))  # N x 120 x 1 x 1

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool.is_identity():
            return x
        x = expect_map_size(x, (1, 1), "F6 needs 1x1 C5 maps, got {got}: LeNet-5 takes 32x32 images "
                            "(pad 28x28 MNIST digits by 2 pixels)")
        x = self.act(self.f6(self.global_pool(x)))  # N x 84
        return x if pre_logits else self.output(x)


# The paper's layer counts with a full C3 (6 x 16 x 25 + 16 = 2,416), plain pooling and the
# linear output: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 (tests/test_lenet.py checks each).
@register_model(**PAPER, params=61_706)
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5; ``c3_table=True, trainable_subsampling=True`` gives the paper's C1-F6 (60,000 parameters)."""
    return LeNet5(**kwargs)
