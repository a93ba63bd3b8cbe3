"""The pooling between a network's last feature map and its head, selectable as timm's ``global_pool``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

POOL_TYPES = ("avg", "max", "avgmax", "")


class SelectAdaptivePool2d(nn.Module):
    """Adaptive pooling to ``output_size`` by ``pool_type``, then flattened to N x (C * size * size).

    ``"avg"`` and ``"max"`` are torch's adaptive pools; ``"avgmax"`` is their mean
    (same width); ``""`` passes the map through unchanged and unflattened. A
    global pool has ``output_size=1``; VGG and AlexNet pool to their fc6's 7x7 / 6x6.
    """

    def __init__(self, pool_type: str = "avg", output_size: int = 1, flatten: bool = True):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"unknown global_pool {pool_type!r}: use one of {', '.join(map(repr, POOL_TYPES))}")
        self.pool_type, self.output_size, self.flatten = pool_type, output_size, flatten

    def is_identity(self) -> bool:
        return self.pool_type == ""

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_type == "":
            return x
        if self.pool_type == "avg":
            x = nn.functional.adaptive_avg_pool2d(x, self.output_size)
        elif self.pool_type == "max":
            x = nn.functional.adaptive_max_pool2d(x, self.output_size)
        else:
            x = 0.5 * (nn.functional.adaptive_avg_pool2d(x, self.output_size)
                       + nn.functional.adaptive_max_pool2d(x, self.output_size))
        return torch.flatten(x, 1) if self.flatten else x

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}, output_size={self.output_size}, flatten={self.flatten}"
