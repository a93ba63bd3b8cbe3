"""Watching for non-finite training without waiting for the device on every step.

Each step adds a few tiny device operations (is the loss finite? is the total
gradient norm finite?) to a record that stays on the device: the first bad
step's number and its loss. The host reads it only at log points and before
any checkpoint is written, so a non-finite value stops the run there, and the
checkpoint on disk stays the last one whose weights were all finite.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn


def grad_norm(parameters: Iterable[nn.Parameter]) -> Tensor:
    """The 2-norm of all gradients together, on their device (no host sync); NaN or Inf if any entry is."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: one fused kernel per device and dtype
        return torch.nn.utils.get_total_norm(grads, foreach=None)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def nonfinite_entries(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or Inf (one host sync for all)."""
    floats = [(k, v) for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    if not floats:
        return []
    ok = torch.stack([v.detach().isfinite().all().to(floats[0][1].device) for _, v in floats]).tolist()
    return [k for (k, _), good in zip(floats, ok) if not good]


class FiniteWatch:
    """The first step, since the last ``clear``, whose loss or gradient norm was not finite: kept on ``device``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.clear()

    def clear(self) -> None:
        self._first = torch.full((3,), float("nan"), dtype=torch.float64, device=self.device)  # step, loss, norm

    def record(self, step: int, loss: Tensor, norm: Tensor | None = None) -> None:
        """Note step ``step``'s loss (and gradient norm) if they are the first non-finite ones. Asynchronous."""
        loss = loss.detach().to(torch.float64).reshape(())
        norm = loss.new_zeros(()) if norm is None else norm.detach().to(self.device, torch.float64).reshape(())
        bad = ~(loss.isfinite() & norm.isfinite())
        first = bad & self._first[0].isnan()
        now = torch.stack([torch.full((), step, dtype=torch.float64, device=self.device), loss, norm])
        self._first = torch.where(first, now, self._first)

    def first_bad(self) -> tuple[int, float, float] | None:
        """(step, loss, gradient norm) of the first bad step, or None. Reads the device: call at log points."""
        step, loss, norm = self._first.tolist()
        return None if step != step else (int(step), loss, norm)  # NaN step: none seen

    def flag(self) -> Tensor:
        """1.0 when a bad step was seen, as a device tensor (to agree over DDP processes)."""
        return (~self._first[0].isnan()).to(torch.float32).reshape(1)
