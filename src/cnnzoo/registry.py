"""Model registry: name -> builder, with each model's input spec and its paper's reference figures."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .layers.drop import drop_path_from_keywords

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelCfg:
    """What a model expects as input, and what its paper (or the reference table of its family) reports."""

    input_size: tuple[int, int, int] = (3, 224, 224)  # C x H x W the paper trains and evaluates at
    num_classes: int = 1000  # classes of the data set the reference figures are for
    mean: tuple[float, ...] = IMAGENET_MEAN  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, ...] = IMAGENET_STD
    paper: str = ""  # the paper's title
    arxiv: str = ""  # its arXiv id, where it has one
    params: int | None = None  # exact reference parameter count at num_classes
    paper_params: float | None = None  # the paper's own rounded count, in millions, where it prints no exact one
    macs: float | None = None  # reference GMACs at input_size, to the decimals the reference prints
    top1_err: float | None = None  # ImageNet (or CIFAR) top-1 error, %: the paper's unless eval_note names a source
    top5_err: float | None = None  # top-5 error, %, likewise
    eval_note: str = ""  # how the error was measured (single crop, 10-crop, ...) and by whom if not the paper

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def img_size(self) -> int:
        return self.input_size[-1]


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}


def register_model(fn: Callable | None = None, **cfg):
    """Register a model entry point under its function name.

    Use bare (``@register_model``) or with the reference figures
    (``@register_model(params=25_557_032, macs=4.089, input_size=(3, 224, 224))``).
    An ``int`` input_size is a square RGB image.
    """
    if isinstance(cfg.get("input_size"), int):
        cfg["input_size"] = (3, cfg["input_size"], cfg["input_size"])

    def register(fn: Callable) -> Callable:
        if fn.__name__ in _MODELS:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        _MODELS[fn.__name__] = fn
        _CFGS[fn.__name__] = ModelCfg(**cfg)
        return fn

    return register(fn) if fn is not None else register


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def _lookup(name: str) -> str:
    if name in _MODELS:
        return name
    close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown model {name!r}{hint} (`cnnzoo list` shows all {len(_MODELS)})")


def model_cfg(name: str) -> ModelCfg:
    """The registered input spec and reference figures of ``name``."""
    return _CFGS[_lookup(name)]


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 pretrained: bool | str = False, **kwargs) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` default to the model's own (1000 and 3 for
    the ImageNet models, 10 classes for the CIFAR ones, 1 channel for LeNet-5).
    ``pretrained``: True loads the model's default published weights (or those of
    TAG when ``name`` is ``NAME.TAG``, as in timm), a string the weights of that tag
    (``cnnzoo.hub`` lists them).
    Other keywords go to the family's constructor; one it does not take is an error. The stochastic-depth
    keywords ``drop_path_rate / _mode / _schedule / _inverted`` become one ``drop_path=DropPathSpec(...)``.
    """
    name, _, tag = name.partition(".")
    builder = _MODELS[_lookup(name)]
    cfg = _CFGS[name]
    num_classes = cfg.num_classes if num_classes is None else num_classes
    in_chans = cfg.in_chans if in_chans is None else in_chans
    kwargs = drop_path_from_keywords(kwargs)
    try:
        model = builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise ValueError(f"{name}: {e}; see the family's constructor for the arguments it takes") from None
    model.default_cfg = dataclasses.replace(
        cfg, num_classes=num_classes, input_size=(in_chans, *cfg.input_size[1:])
    )
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(model, name, (tag or None) if pretrained is True else pretrained)
    return model
