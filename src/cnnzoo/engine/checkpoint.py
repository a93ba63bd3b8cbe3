"""Training checkpoints and weight files of a run; the file handling itself is ``cnnzoo.files``.

- ``last.ckpt``: the full training state (model, optimizer, scheduler, grad
  scaler, epoch, step, every RNG state, the metrics so far) and a SHA-256 of it,
  a ``torch.save`` file read back with ``torch.load(weights_only=True)``: only
  tensors and plain Python data are unpickled, so a crafted file cannot run code.
- ``*.safetensors``: model weights alone, with the model's name and config in
  the header metadata; safetensors holds no code at all.

Every file is written atomically (``cnnzoo.files.atomic_write``): a kill or a
full disk during the write leaves the previous file whole.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..files import CheckpointError, WriteError, atomic_write, load_checkpoint, load_file, save_checkpoint
from ..files import save_safetensors
from ..layers.drop import gate_state, load_gate_state
from ..weights import check_state_dict

__all__ = ["CheckpointError", "WriteError", "atomic_write", "load_checkpoint", "load_file", "load_weights",
           "read_weights", "rng_state", "save_checkpoint", "save_weights", "set_rng_state"]


def rng_state(model: nn.Module | None = None) -> dict[str, Any]:
    """Every random generator training draws from: torch (CPU and CUDA), numpy, Python, ``model``'s gate stream."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        # numpy's state holds an ndarray, which weights_only loading refuses: keep it as a tensor.
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
        "gates": gate_state(model) if model is not None else [],
    }


def set_rng_state(state: dict[str, Any], model: nn.Module | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if model is not None:
        load_gate_state(model, state.get("gates"))


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> None:
    """Model weights as safetensors, atomically; ``metadata`` (JSON-able) and a checksum go into the header."""
    save_safetensors(path, model.state_dict(), metadata)


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Deprecated: ``cnnzoo.files.load_file`` reads any weight or checkpoint file."""
    warnings.warn("cnnzoo.engine.read_weights is deprecated; use cnnzoo.files.load_file", DeprecationWarning,
                  stacklevel=2)
    return load_file(path)


def load_weights(model: nn.Module, state_dict: dict[str, Tensor], source: str = "") -> nn.Module:
    """Load ``state_dict`` strictly; a mismatch lists the missing, unexpected and mis-shaped keys."""
    try:
        check_state_dict(model, state_dict)
    except ValueError as e:
        raise CheckpointError(f"{source or 'weights'}: {e}") from None
    model.load_state_dict(state_dict, strict=True)
    return model
