"""Loading weights made by other libraries (torchvision, timm, pretrainedmodels) into cnnzoo models."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from .files import load_file

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


def adapt_input_conv(in_chans: int, weight: Tensor) -> Tensor:
    """A first-conv ``weight`` (O x C x kH x kW) for ``in_chans`` input channels instead of C (timm's rule).

    One channel sums the filters over C (a grey image then gives the colour weights' response to equal R, G,
    B). More channels repeat the C filters cyclically and scale them by C / in_chans, which keeps the response to
    an input whose channels are all equal when in_chans is a multiple of C (and roughly otherwise).
    """
    channels = weight.shape[1]
    if in_chans == channels:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // channels)  # ceil
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (channels / in_chans)


def _fit_to_model(model: nn.Module, state_dict: dict[str, Tensor], in_chans: int, num_classes: int) -> list[str]:
    """Make a pretrained state dict (in cnnzoo's names) fit a model built with other channels or classes.

    A conv weight whose only difference is its input channels (``in_chans`` in the file) is adapted by
    :func:`adapt_input_conv`; a tensor whose only difference is its leading ``num_classes`` (a classifier)
    keeps the model's fresh initialisation; the tensors of a classifier or of auxiliary heads
    (``aux*`` modules) the model was built without are dropped, as torchvision drops the aux heads of its
    GoogLeNet file by default. Returns what was adapted or re-initialised, for the user.
    """
    own = model.state_dict()
    head = getattr(type(model), "classifier", None)  # the name of the final layer (a class attribute)
    adapted, fresh = [], []
    for key in list(state_dict):
        value = state_dict[key]
        if key not in own:
            top = key.split(".", 1)[0]
            if top == head or top.lower().startswith("aux"):
                del state_dict[key]
            continue
        mine = own[key]
        if mine.shape == value.shape:
            continue
        if (value.ndim == 4 and value.shape[1] == in_chans and mine.shape[0] == value.shape[0]
                and mine.shape[2:] == value.shape[2:]):
            state_dict[key] = adapt_input_conv(mine.shape[1], value)  # keeps the file's dtype
            adapted.append(key)
        elif value.shape[0] == num_classes and mine.shape[1:] == value.shape[1:]:
            state_dict[key] = mine.detach().clone()
            fresh.append(key)
    notes = []
    if adapted:
        notes.append(f"first conv {', '.join(adapted)} adapted from {in_chans} input channels")
    if fresh:
        notes.append(f"{', '.join(fresh)} freshly initialised (the weights classify {num_classes} classes)")
    return notes


def read_weight_file(path: str | Path) -> dict[str, Tensor]:
    """Deprecated: ``cnnzoo.files.load_file(path)[0]`` (one loader, every file checked before it is trusted)."""
    warnings.warn("cnnzoo.weights.read_weight_file is deprecated; use cnnzoo.files.load_file", DeprecationWarning,
                  stacklevel=2)
    return load_file(path)[0]


def load_pretrained(model: nn.Module, name: str, tag: str | None = None) -> nn.Module:
    """Load the published weights of ``name`` (tag ``tag``, default its first; see ``cnnzoo.hub``) into ``model``.

    The file comes from the torch.hub or Hugging Face cache, or is downloaded there. A model built with other
    ``in_chans`` or ``num_classes`` than the weights' gets an adapted first conv and a fresh classifier, and a
    warning says so. Sets ``model.pretrained_cfg`` to the file's entry (its preprocessing and accuracy).
    """
    from .hub import get_pretrained_cfg, weight_file

    cfg = get_pretrained_cfg(name, tag)
    state_dict, _ = load_file(weight_file(cfg))
    state_dict = _converter(model, cfg.source)(dict(state_dict))
    notes = _fit_to_model(model, state_dict, cfg.input_size[0], cfg.num_classes)
    import_weights(model, state_dict)
    if notes:
        warnings.warn(f"{cfg.name}: " + "; ".join(notes), stacklevel=3)  # at the line that called create_model
    model.pretrained_cfg = cfg.to_dict()
    return model
