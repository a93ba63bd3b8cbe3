"""Checkpoints and weight files: written atomically, read without running anyone's code.

- ``last.ckpt``: the full training state (model, optimizer, scheduler, grad
  scaler, epoch, step, every RNG state, the metrics so far), a ``torch.save``
  file that is read back with ``torch.load(weights_only=True)``: only tensors
  and plain Python data are unpickled, so a crafted file cannot run code.
- ``*.safetensors``: model weights alone, with the model's name and config in
  the header metadata; safetensors holds no code at all.

Every file is written to a temporary file beside its target, flushed, fsync'ed
and renamed over the target (``os.replace`` is atomic on POSIX): a kill or a
full disk during the write leaves the previous file whole.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor, nn

from ..layers.drop import gate_state, load_gate_state
from ..weights import check_state_dict


class CheckpointError(RuntimeError):
    """A checkpoint or weight file that cannot be written or safely read; the message says why and what to do."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so that it is either the old file or the complete new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"the previous {path.name} is kept" if path.exists() else f"no earlier {path.name} existed"
        raise CheckpointError(f"could not write {path}: {reason}; {kept}") from e


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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically (``state`` holds tensors and plain Python data only)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``: tensors and plain data, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).strip().splitlines()
        detail = next((line for line in detail if "GLOBAL" in line or "Unsupported" in line),
                      detail[0] if detail else "")
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain data, which could run"
            f" code when unpickled ({detail.strip()}); cnnzoo only reads weights-only checkpoints"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file): {e}") from None


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> None:
    """Model weights as safetensors, atomically; ``metadata`` (JSON-able) goes into the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda f: f.write(st_save(tensors, metadata=header)))


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A weight file's tensors and metadata: ``.safetensors``, or the model of a cnnzoo ``.ckpt``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {path} does not exist")
    if path.suffix != ".safetensors":
        ckpt = load_checkpoint(path)
        if "model" not in ckpt:
            raise CheckpointError(f"{path} is not a cnnzoo checkpoint (no 'model' entry); give a .safetensors file")
        return ckpt["model"], {"config": ckpt.get("config", {}), **ckpt.get("meta", {})}
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            header = f.metadata() or {}
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from None
    return tensors, {k: json.loads(v) for k, v in header.items()}


def load_weights(model: nn.Module, state_dict: dict[str, Tensor], source: str = "") -> nn.Module:
    """Load ``state_dict`` strictly; a mismatch lists the missing, unexpected and mis-shaped keys."""
    try:
        check_state_dict(model, state_dict)
    except ValueError as e:
        raise CheckpointError(f"{source or 'weights'}: {e}") from None
    model.load_state_dict(state_dict, strict=True)
    return model
