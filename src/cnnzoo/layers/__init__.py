"""Small blocks shared by the families."""

from .concat import Concat
from .conv import ConvBnAct, conv1x1, conv3x3
from .drop import StochasticDepth, seed_gates, survival_probs
from .lrn import LocalResponseNorm
from .separable import SeparableConv2d
