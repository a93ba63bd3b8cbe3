"""Parameters and multiply-accumulates (MACs) of a model, counted from its real modules.

MACs are those of convolutions and linear layers (torchvision's ``_ops`` and
timm's ``gmacs`` convention), counted by ``torch.utils.flop_counter`` (which
reports 2 FLOPs per MAC) on one image in eval mode. Models built on the meta
device (``with torch.device("meta"): create_model(...)``) are counted without
allocating or computing anything.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..registry import create_model, model_cfg


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BN gamma and beta; not BN running statistics)."""
    return sum(p.numel() for p in model.parameters())


def _example_input(model: nn.Module, input_size: int | tuple[int, int, int] | None) -> torch.Tensor:
    cfg = getattr(model, "default_cfg", None)
    if input_size is None:
        if cfg is None:
            raise ValueError("give input_size: this model was not built by create_model and has no default_cfg")
        input_size = cfg.input_size
    elif isinstance(input_size, int):
        input_size = (cfg.in_chans if cfg else 3, input_size, input_size)
    p = next(model.parameters())
    return torch.zeros(1, *input_size, device=p.device, dtype=p.dtype)


def module_macs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> dict[str, int]:
    """MACs of one image through each module, by qualified name ("" is the whole model)."""
    x = _example_input(model, input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    root = type(model).__name__
    macs = {}
    for name, counts in counter.get_flop_counts().items():
        if name == "Global":
            name = ""
        elif name == root or name.startswith(root + "."):
            name = name[len(root) + 1:]
        macs[name] = sum(counts.values()) // 2
    macs.setdefault("", 0)
    return macs


def count_macs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> int:
    """Multiply-accumulates of conv and linear layers for one image of ``input_size`` (default: the model's)."""
    return module_macs(model, input_size)[""]


def min_input_size(name: str, **kwargs) -> int:
    """The smallest square input the registered model ``name`` accepts (found on the meta device)."""

    def fits(size: int) -> bool:
        try:
            model(torch.zeros(1, cfg.in_chans, size, size, device="meta"))
            return True
        except (RuntimeError, ValueError):  # torch's shape errors; a family's own input-size check
            return False

    cfg = model_cfg(name)
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
    lo, hi = 1, cfg.img_size  # the model accepts hi; find the least size it accepts
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


def compare_models(
    model: nn.Module, other: nn.Module, input_size: int | tuple[int, int, int] | None = None
) -> dict[str, tuple[int, int, int, int]]:
    """Params and MACs of two models side by side: ``{module: (params, other's params, macs, other's macs)}``.

    One entry per top-level module the two share by name and that has params
    or MACs in either (in ``model``'s order), then ``""``: the whole models.
    Both run at ``input_size`` (default: ``model``'s).
    """
    if input_size is None:
        input_size = _example_input(model, None).shape[1:]
    macs, other_macs = module_macs(model, input_size), module_macs(other, input_size)
    children, other_children = dict(model.named_children()), dict(other.named_children())
    rows = {}
    for name in children:
        if name not in other_children:
            continue
        row = (count_params(children[name]), count_params(other_children[name]),
               macs.get(name, 0), other_macs.get(name, 0))
        if any(row):
            rows[name] = row
    rows[""] = (count_params(model), count_params(other), macs[""], other_macs[""])
    return rows


def check_input_size(name: str, size: int) -> None:
    """Raise a ``ValueError`` naming the minimum if ``size`` is too small a square input for model ``name``."""
    if size < 1:
        raise ValueError(f"input size must be a positive number of pixels, got {size}")
    if size < model_cfg(name).img_size and size < (least := min_input_size(name)):
        raise ValueError(f"input size {size} is too small for {name}: it needs at least {least}x{least}")
