"""Polyak averaging: an exponential moving average of a model's weights, kept beside the trained model.

GoogLeNet (arXiv 1409.4842) took its final model from Polyak averaging,
Inception-v3 (arXiv 1512.00567, section 8) and Xception (arXiv 1610.02357)
evaluated a running average of the weights rather than the last ones
(Google's TensorFlow Inception training used decay 0.9999).
After every optimizer step each averaged tensor e moves towards the model's w::

    e = decay * e + (1 - decay) * w        (one fused lerp over all tensors, on the device)

so after n steps from the starting weights w0,
e_n = decay^n w0 + (1 - decay) * sum_i decay^(n-i) w_i.

BatchNorm's running mean and variance are averaged with the same decay as the
weights (that TensorFlow training averaged the moving statistics together
with the trainable variables): the averaged statistics then belong to the averaged
weights' history rather than to the last step's weights. Integer buffers
(BatchNorm's ``num_batches_tracked``) are counts, not estimates: they are
copied.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class WeightAverage:
    """The moving average of ``model``'s parameters and buffers, as a second model (``.model``) in eval mode.

    ``update(model)`` after every optimizer step; ``state_dict()`` / ``load_state_dict()`` are the averaged
    model's own, so they save and load like the model's weights (and ``.model`` evaluates like the model).
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the averaging decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)  # starts at the model's weights

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights. Device operations only: never waits for them."""
        averaged, current = _floats(self.model), _floats(model)
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        for e, w in zip(_counts(self.model), _counts(model)):
            e.copy_(w)

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)


def _floats(model: nn.Module) -> list[Tensor]:
    """The floating-point parameters and buffers of ``model``, in a fixed order (parameters first)."""
    return [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]


def _counts(model: nn.Module) -> list[Tensor]:
    """The non-floating-point buffers of ``model`` (BatchNorm's ``num_batches_tracked``)."""
    return [t for t in model.buffers() if not t.is_floating_point()]
