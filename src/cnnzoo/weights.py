"""Loading weights made by other libraries (torchvision, timm, pretrainedmodels) into cnnzoo models."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

Converter = Callable[[dict[str, Tensor]], dict[str, Tensor]]
_CONVERTERS: dict[tuple[type, str], Converter] = {}


def register_converter(model_cls: type, source: str) -> Callable[[Converter], Converter]:
    """Register a function that renames a ``source`` library's state dict into ``model_cls``'s names."""

    def register(fn: Converter) -> Converter:
        _CONVERTERS[(model_cls, source)] = fn
        return fn

    return register


def rename_modules(state_dict: Mapping[str, Tensor], names: Mapping[str, str]) -> dict[str, Tensor]:
    """Move each tensor whose owning module is a key of ``names`` (e.g. ``"classifier.6"``) to the new name."""
    renamed = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        renamed[f"{names[module]}.{leaf}" if module in names else key] = value
    return renamed


def fill_bn_counters(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add a zero ``num_batches_tracked`` beside every BatchNorm ``running_mean`` that lacks one.

    Checkpoints saved before PyTorch 0.4 have no such buffer; ``nn.BatchNorm2d`` itself fills in 0 then.
    """
    for key in [k for k in state_dict if k.endswith(".running_mean")]:
        state_dict.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    return state_dict


def _converter(model: nn.Module, source: str) -> Converter:
    for cls in type(model).__mro__:
        if (cls, source) in _CONVERTERS:
            return _CONVERTERS[(cls, source)]
    known = sorted(s for c, s in _CONVERTERS if isinstance(model, c))
    raise ValueError(
        f"no {source!r} weight layout for {type(model).__name__}; sources it can import: {', '.join(known) or 'none'}"
    )


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Raise a ``ValueError`` listing every missing, unexpected, mis-shaped or mis-typed (integer for float) key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    kinds = sorted(  # integers where the model has floats (or the reverse) are not weights of this model
        f"{k}: file {state_dict[k].dtype} vs model {own[k].dtype}"
        for k in set(own) & set(state_dict)
        if own[k].dtype.is_floating_point != state_dict[k].dtype.is_floating_point
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes),
                            ("dtype mismatches", kinds))
        if keys
    ]
    if problems:
        raise ValueError(f"weights do not fit {type(model).__name__}: " + "; ".join(problems))


def import_weights(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "cnnzoo") -> nn.Module:
    """Load a peer library's ``state_dict`` into ``model``, strictly.

    ``source`` names the layout: ``"cnnzoo"`` (our own names), ``"torchvision"``,
    ``"timm"``, ``"pretrainedmodels"``, as far as the model's family supports it.
    Any missing, unexpected or mis-shaped key is an error that lists them.
    """
    state_dict = dict(state_dict) if source == "cnnzoo" else _converter(model, source)(dict(state_dict))
    check_state_dict(model, state_dict)
    with torch.no_grad():
        model.load_state_dict(state_dict, strict=True)
    return model
