"""Stochastic depth (Huang et al. 2016, arXiv 1603.09382) that really skips dropped blocks.

During training each residual branch is kept with its survival probability
p_l; a dropped branch is replaced by the identity shortcut. In the default
``"batch"`` mode one gate is drawn per block per forward pass (per mini-batch,
as in the paper's code) and a closed gate never calls the branch, so neither
its forward nor its backward work is done: this is where the paper's ~25%
shorter training comes from. At evaluation every branch runs, scaled by p_l.

``inverted=True`` uses the other convention: an open gate divides the branch
by p_l during training and evaluation applies no scaling (the expected output
is the same; eval-time code is then free of p_l).

Multi-path modules (PolyNet's stochastic paths) give each path its own gate
and call ``open()`` (compute this path?) and ``weigh()`` (its contribution)
themselves, since a cascade may need a dropped path's output for a later one.

``"row"`` mode draws one gate per sample (timm's ``DropPath``, torchvision's
``StochasticDepth(mode="row")``): the branch is always computed for the whole
batch and then masked, so it regularises but saves no compute.

Gates come from one generator shared by every block (``gate_generator``), not
from torch's global one, so data augmentation does not shift them, and the
training loop can reseed it each step (``seed_gates``): under DDP every rank
then drops the same blocks and the gradients agree.

Gradient checkpointing (``torch.utils.checkpoint``) works: the recomputed
forward reuses the gates of the original one.

Under ``torch.compile`` the Python branch on the gate is data-dependent, so
a compiled block graph-breaks at the gate (in "batch" mode only); the compiled
pieces on either side stay compiled.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

Mode = Literal["batch", "row"]
Schedule = Literal["linear", "uniform"]

gate_generator = torch.Generator()


def seed_gates(seed: int) -> None:
    """Reseed the generator every gate is drawn from (call once per step for DDP and exact resume)."""
    gate_generator.manual_seed(seed)


def survival_probs(num_blocks: int, drop_rate: float, schedule: Schedule = "linear") -> list[float]:
    """p_l for blocks l = 1..L; ``drop_rate`` is 1 - p_L.

    linear: p_l = 1 - (l / L) * (1 - p_L), the paper's decay (first block kept
    most often, last block with p_L); uniform: p_l = p_L for every block.
    """
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_rate}")
    if schedule == "linear":
        return [1.0 - (l / num_blocks) * drop_rate for l in range(1, num_blocks + 1)]
    if schedule == "uniform":
        return [1.0 - drop_rate] * num_blocks
    raise ValueError(f"unknown drop_path_schedule {schedule!r}: use 'linear' or 'uniform'")


class StochasticDepth(nn.Module):
    """Gates one residual branch: ``shortcut + branch(x)``, with the branch dropped at random in training."""

    def __init__(self, survival_prob: float = 1.0, mode: Mode = "batch", inverted: bool = False):
        super().__init__()
        if mode not in ("batch", "row"):
            raise ValueError(f"unknown drop_path_mode {mode!r}: use 'batch' or 'row'")
        self.survival_prob = survival_prob
        self.mode = mode
        self.inverted = inverted

    def gate(self) -> bool:
        """Draw this block's gate for one pass ("batch" mode): True means compute the branch.

        Gradient checkpointing reruns the forward pass inside backward; that rerun
        reuses the gate drawn in the forward pass, so both see the same network.
        """
        if torch._C._current_graph_task_id() == -1:  # not inside a backward pass
            self._open = torch.rand((), generator=gate_generator).item() < self.survival_prob
        return self._open

    def open(self) -> bool:
        """Whether the branch runs in this pass: False only for a closed gate in "batch" training mode.

        Draws a gate exactly when one is needed, so multi-path modules that ask
        each path's gate in turn consume the generator as single blocks do.
        """
        if not self.training or self.survival_prob == 1.0 or self.mode == "row":
            return True
        if torch.fx._symbolic_trace.is_fx_tracing():  # the traced graph would keep one draw forever
            raise RuntimeError("stochastic depth in 'batch' mode decides in Python whether a branch runs: a training-mode "
                               "graph cannot be traced; trace in eval mode, or build with drop_path_mode='row'")
        return self.gate()

    def scale(self, branch_out: Tensor) -> Tensor:
        """Scale an open branch: by p_l at eval (paper), or by 1/p_l in training (inverted)."""
        p = self.survival_prob
        if p == 1.0:
            return branch_out
        if self.training:
            return branch_out / p if self.inverted else branch_out
        return branch_out if self.inverted else branch_out * p

    def weigh(self, branch_out: Tensor) -> Tensor:
        """What an open branch adds to the sum: the per-sample mask in "row" training mode, then ``scale``."""
        if self.training and self.mode == "row" and self.survival_prob < 1.0:
            # One gate per sample; these need not agree across DDP ranks (each holds other samples).
            keep = branch_out.new_empty(branch_out.shape[0], *(1,) * (branch_out.ndim - 1))
            branch_out = branch_out * keep.bernoulli_(self.survival_prob)
        return self.scale(branch_out)

    def forward(self, shortcut: Tensor, branch: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``shortcut + branch(x)``; in "batch" training mode a closed gate returns ``shortcut`` without calling ``branch``."""
        if not self.open():
            return shortcut
        out = self.weigh(branch(x))
        # Without autograd (inference) the sum may overwrite the branch's fresh output, as torchvision's
        # `out += identity` does: one memory pass less per block.
        return shortcut + out if torch.is_grad_enabled() else out.add_(shortcut)

    def extra_repr(self) -> str:
        return f"survival_prob={self.survival_prob:.4f}, mode={self.mode}, inverted={self.inverted}"
