"""Activation memory: what a training-mode forward pass keeps alive for the backward pass."""

from __future__ import annotations

import torch
from torch import nn


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors that autograd saves for backward in one forward pass of ``model``.

    Counts every storage that a ``saved_tensors_hooks`` pack hook sees once (views of
    one storage count once), leaving out the parameters and the input, which exist
    with or without the pass. Regions run under activation checkpointing save through
    their own inner hooks, which take precedence: what they do not keep is not counted,
    while the inputs they keep for recomputation are.
    """
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)  # the graph (and what it saved) is freed on return; the storages were alive until then
    return sum(saved.values())
