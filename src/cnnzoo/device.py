"""Which device to run on: the one place that turns ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a device."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")  # what the CLI offers; ``cuda:N`` also works


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` (or None): CUDA when torch sees a GPU, else the CPU. ``cuda`` without a GPU is a ValueError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but torch sees no CUDA GPU; use --device cpu (or auto)")
    return device
