"""Inception's parallel branches joined along channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Concat(nn.ModuleDict):
    """Runs every named branch on the same input and concatenates the outputs along channels, in order.

    The branch names become the state-dict keys (``branch0``, ``path1``, ...),
    so a layout whose weights we import keeps its own names.
    """

    def __init__(self, **branches: nn.Module):
        super().__init__(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.values()], 1)
