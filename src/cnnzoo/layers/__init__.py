"""Small blocks shared by the families."""

from .concat import Concat
from .conv import ConvBnAct, conv1x1, conv3x3
from .drop import (DropPathSpec, GateStream, StochasticDepth, drop_path_from_keywords, gate_state, load_gate_state,
                   seed_gates, survival_probs)
from .lrn import LocalResponseNorm
from .separable import SeparableConv2d
