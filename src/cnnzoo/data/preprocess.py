"""Each weight file's own evaluation preprocessing (timm's ``resolve_data_config`` and eval transform).

``data_config(model)`` reads the preprocessing published with the weights a model
holds (``model.pretrained_cfg``, set by ``pretrained=True``), or with a name's
default weights, and falls back to the model's input size and normalisation with
the ImageNet convention (resize the shorter side to 256 for a 224 crop, bilinear;
small CIFAR-sized inputs uncropped).
``create_transform(config)`` turns it into a PIL-image -> tensor transform.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .folder import is_image_file
from .transforms import STORE_RATIO

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
_INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC,
                   "nearest": v2.InterpolationMode.NEAREST}


def _read(cfg: Any, key: str, default: Any = None) -> Any:
    """A key of a dict-like cfg (timm) or an attribute of a dataclass cfg (cnnzoo's ModelCfg)."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return cfg[key]
    except (TypeError, KeyError):
        return getattr(cfg, key, default)


def data_config(model: torch.nn.Module | str) -> dict:
    """``input_size, interpolation, mean, std, crop_pct, crop_mode`` for evaluating ``model``.

    ``model``: a model (its loaded weights' preprocessing, else its own input spec), or a name,
    ``NAME`` (its default weights') or ``NAME.TAG`` (those weights').
    """
    if isinstance(model, str):
        from ..hub import get_pretrained_cfg, pretrained_tags
        from ..registry import model_cfg

        name = model.partition(".")[0]
        if "." in model or pretrained_tags(name):
            return {key: _read(get_pretrained_cfg(model).to_dict(), key) for key in DATA_CONFIG_KEYS}
        cfg = model_cfg(name)
    else:
        weights = getattr(model, "pretrained_cfg", None)
        cfg = model.default_cfg
        if weights is not None and _read(weights, "crop_pct") is not None:
            config = {key: _read(weights, key) for key in DATA_CONFIG_KEYS}
            in_chans = _read(cfg, "input_size")[0]  # the model's, if pretrained=True adapted the first conv
            config["input_size"] = (in_chans, *config["input_size"][1:])
            return config
    input_size = tuple(_read(cfg, "input_size"))
    # ImageNet's convention (256 for a 224 crop) for ImageNet-sized inputs; the CIFAR and digit models see whole images
    crop_pct = 1 / STORE_RATIO if input_size[-1] >= 224 else 1.0
    return dict(input_size=input_size, interpolation="bilinear", mean=tuple(_read(cfg, "mean")),
                std=tuple(_read(cfg, "std")), crop_pct=crop_pct, crop_mode="center")


def create_transform(config: dict) -> v2.Compose:
    """The eval transform of ``config``: resize the shorter side to size / crop_pct, centre-crop size, normalise."""
    if config.get("crop_mode", "center") != "center":
        raise ValueError(f"crop_mode {config['crop_mode']!r} is not supported; cnnzoo evaluates centre crops")
    interpolation = config.get("interpolation", "bilinear")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {', '.join(_INTERPOLATIONS)}")
    channels, height, width = config["input_size"]
    crop_pct = config.get("crop_pct", 1.0)
    # round, not floor: torchvision's 342 for a 299 crop is 299 / 0.8743 = 341.99 (timm's 333 = 299 / 0.8975 either way)
    resize = round(min(height, width) / crop_pct) if height == width else tuple(round(s / crop_pct) for s in (height, width))
    return v2.Compose([
        v2.Resize(resize, interpolation=_INTERPOLATIONS[interpolation], antialias=True),
        v2.CenterCrop((height, width)),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Grayscale(1) if channels == 1 else v2.Identity(),
        v2.Normalize(list(config["mean"]), list(config["std"])),
    ])


class ValidationFolder(Dataset):
    """A validation split alone: ImageNet-style class folders directly under ``root``, or under ``root/val``.

    Labels: with as many class folders as the weights have classes, the i-th folder in sorted order is
    class i (ImageNet's synset folders sort into its class order). Folders named by class number
    (``0/``, ``17/``, ...) are that class, for a subset of the classes.
    """

    def __init__(self, root: str | os.PathLike, transform, num_classes: int):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ValueError(f"data folder {root} does not exist; give a folder of class folders (or one with val/)")
        root = root / "val" if (root / "val").is_dir() else root
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise ValueError(f"{root} has no class folders; put each class's images in ROOT/<class>/ or ROOT/val/<class>/")
        if len(classes) == num_classes:
            labels = dict(zip(classes, range(num_classes)))
        elif all(c.isdecimal() and int(c) < num_classes for c in classes):
            labels = {c: int(c) for c in classes}
        else:
            raise ValueError(f"{root} has {len(classes)} class folders, the weights {num_classes} classes: give all"
                             f" {num_classes} (sorted names are class indices) or name folders by class number")
        self.samples = [(str(root / c / f), labels[c]) for c in classes
                        for f in sorted(os.listdir(root / c)) if is_image_file(f)]
        if not self.samples:
            raise ValueError(f"{root} holds no image files in its class folders")
        self.root, self.transform = root, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label
