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
f(a) = 1.7159 tanh(2a/3) (Appendix A). Two networks are registered:

- ``lenet5``, the paper's: C3 map j sees only the S2 maps in column j of
  Table I (``C3_TABLE``: fewer connections, and broken symmetry, since
  different maps get different inputs and so learn different features); an S
  unit adds its four inputs, multiplies the sum by a trainable coefficient,
  adds a trainable bias (one pair per map) and squashes the result; the output
  layer is RBF units (``RBFOutput``) with fixed +-1 prototypes.
- ``lenet5_simplified``, the one most courses and libraries call LeNet-5:
  C3 fully connected (2,416 parameters), plain 2x2 average pooling, and a
  linear output layer (84 -> classes, 850 parameters for 10); 61,706 in all.
  ``act_layer=nn.ReLU`` gives its ReLU form. Its layers keep PyTorch's default
  initialisation, as in those courses: with the paper's (small for wide layers)
  and a linear output, plain SGD sits at chance for many epochs on the digits.

The RBF output. Unit i computes y_i = sum_j (x_j - w_ij)^2, the squared
distance from F6's output to the prototype w_i: a 7x12 bitmap of the class's
character, -1 for background and +1 for ink (Fig. 3), chosen by hand and not
trained (learned prototypes admit a trivial minimum of the paper's basic loss:
every prototype and F6's output all equal). The model returns -y_i, so the
best class has the largest value, as with logits, and cross-entropy on -y is
the paper's MAP criterion (Section II.C), y_D + log(e^-j + sum_i e^-y_i),
without the term of its rubbish class (the constant j). The digit prototypes
(``DIGIT_BITMAPS``) are drawn here in the manner of Fig. 3, not copied pixel
for pixel from it. The paper gives prototypes only for its character set: for
a number of classes other than the ten digits each class gets a random +-1
code (``rbf_prototypes``), which ``reset_classifier`` also uses. Distances over
84 units make large logits: train with small learning rates (the paper's global
rates run from 0.0005 down to 0.00001; 0.001 with SGD and momentum learns the
embedded digits, 0.02 is unstable).
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


# The output layer's prototypes for the digits: 12 rows of 7 (84 = F6's width), "#" ink (+1), "." background (-1).
DIGIT_BITMAPS = (
    (".......", "..###..", ".#...#.", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", ".#...#.", "..###..", "......."),  # 0
    (".......", "...#...", "..##...", ".#.#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", ".#####.", "......."),  # 1
    (".......", "..###..", ".#...#.", "#.....#", "......#", ".....#.",
     "....#..", "...#...", "..#....", ".#.....", "#######", "......."),  # 2
    (".......", ".####..", "#....#.", ".....#.", ".....#.", "..###..",
     ".....#.", "......#", "......#", "#....#.", ".####..", "......."),  # 3
    (".......", "....#..", "...##..", "..#.#..", ".#..#..", "#...#..",
     "#######", "....#..", "....#..", "....#..", "....#..", "......."),  # 4
    (".......", "#######", "#......", "#......", "#.###..", "##...#.",
     "......#", "......#", "......#", "#....#.", ".####..", "......."),  # 5
    (".......", "...##..", "..#....", ".#.....", "#......", "#.###..",
     "##...#.", "#.....#", "#.....#", ".#...#.", "..###..", "......."),  # 6
    (".......", "#######", "......#", ".....#.", "....#..", "....#..",
     "...#...", "...#...", "..#....", "..#....", "..#....", "......."),  # 7
    (".......", "..###..", ".#...#.", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", ".#...#.", "..###..", "......."),  # 8
    (".......", "..###..", ".#...#.", "#.....#", "#.....#", ".#...##",
     "..###.#", "......#", ".....#.", "....#..", "..##...", "......."),  # 9
)


def rbf_prototypes(num_classes: int, width: int = 84) -> Tensor:
    """The RBF units' fixed +-1 prototypes, num_classes x width: the digit bitmaps for 10 classes of 84,
    otherwise a random +-1 code per class, the same for every model built (drawn from a generator seeded 0)."""
    if (num_classes, width) == (10, 84):
        codes = [[1.0 if c == "#" else -1.0 for row in bitmap for c in row] for bitmap in DIGIT_BITMAPS]
    else:
        g = torch.Generator().manual_seed(0)
        codes = (torch.randint(0, 2, (num_classes, width), generator=g, device="cpu") * 2.0 - 1.0).tolist()
    return torch.tensor(codes)


class RBFOutput(nn.Module):
    """Euclidean RBF units: y_i = sum_j (x_j - w_ij)^2 for fixed prototypes w_i; returns -y (see the module docstring).

    The prototypes are a buffer (``weight``, out_features x in_features): saved with the
    model's state, never trained.
    """

    def __init__(self, prototypes: Tensor):
        super().__init__()
        self.register_buffer("weight", prototypes)
        self.out_features, self.in_features = prototypes.shape

    def forward(self, x: Tensor) -> Tensor:
        # -|x - w_i|^2 = 2 x.w_i - |x|^2 - |w_i|^2, without an N x classes x 84 intermediate
        return 2 * x @ self.weight.T - x.pow(2).sum(1, keepdim=True) - self.weight.pow(2).sum(1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class LeNet5(ImageClassifier):
    """C1-S2-C3-S4-C5-F6-output on a 32x32 image; the defaults are the paper's network.

    Args:
        c3_table: connect C3 to S2 by Table I (the paper) instead of fully.
        trainable_subsampling: the paper's S2/S4 (coefficient, bias and squashing per map)
            instead of a plain 2x2 average.
        rbf_output: the paper's output layer, RBF units with fixed prototypes (``RBFOutput``;
            the model returns negative squared distances), instead of a linear layer.
        act_layer: the squashing function (default the paper's scaled tanh).
        paper_init: the paper's initialisation (Appendix A) instead of PyTorch's layer defaults.
    """

    classifier = "output"

    def __init__(self, c3_table: bool = True, trainable_subsampling: bool = True, rbf_output: bool = True,
                 act_layer: Callable[[], nn.Module] = ScaledTanh, num_classes: int = 10, in_chans: int = 1,
                 paper_init: bool = True):
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
        self.rbf_output = rbf_output
        self.output = RBFOutput(rbf_prototypes(num_classes)) if rbf_output else nn.Linear(84, num_classes)

        # Appendix A: uniform in +-2.4 / F_i, F_i the unit's fan-in (its biases drawn alike here).
        for m in self.modules() if paper_init else ():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 2.4 / (m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, Subsampling) and m.weight is not None:
                nn.init.uniform_(m.weight, -2.4 / 4, 2.4 / 4)
                nn.init.uniform_(m.bias, -2.4 / 4, 2.4 / 4)

    def reset_classifier(self, num_classes: int, *args, **kwargs) -> None:
        """As every model's; with ``rbf_output`` the new layer is RBF units too, prototypes by ``rbf_prototypes``."""
        super().reset_classifier(num_classes, *args, **kwargs)
        if self.rbf_output and num_classes > 0:
            self.output = RBFOutput(rbf_prototypes(num_classes).to(self.f6.weight))

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


# C1-F6 as in the paper's Section II.B (tests/test_lenet.py checks each); the RBF output has no trainable
# parameters.
@register_model(**PAPER, params=60_000)
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5 as the paper builds it: Table I's C3, trainable subsampling, scaled tanh, RBF output."""
    return LeNet5(**kwargs)


# The paper's layer counts with a full C3 (6 x 16 x 25 + 16 = 2,416), plain pooling and the
# linear output: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 (tests/test_lenet.py checks each).
@register_model(**PAPER, params=61_706)
def lenet5_simplified(**kwargs) -> LeNet5:
    """The common simplification: full C3, 2x2 average pooling, linear output, PyTorch's default initialisation
    (``act_layer`` chooses the nonlinearity)."""
    return LeNet5(**{"c3_table": False, "trainable_subsampling": False, "rbf_output": False, "paper_init": False,
                     **kwargs})
