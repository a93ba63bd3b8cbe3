"""Model registry: name -> builder, with each model's input spec and its paper's reference figures.

The public functions keep timm's names and meanings (``create_model``, ``list_models``,
``is_model``, ``list_modules``, ``model_entrypoint``, ``get_pretrained_cfg``), so code
written for timm runs on cnnzoo's models.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

from torch import nn

from .layers.drop import drop_path_from_keywords

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelCfg(Mapping):
    """What a model expects as input, and what its paper (or the reference table of its family) reports.

    Read it by attribute (``cfg.input_size``) or as timm's ``pretrained_cfg`` dict
    (``cfg["input_size"]``, ``cfg.get("first_conv")``, ``dict(cfg)``).
    """

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
    # timm's pretrained_cfg keys; create_model fills the ones that name the model's own modules.
    architecture: str = ""  # the registered name
    first_conv: str = ""  # the first convolution's module (its ".weight" is in the state dict)
    classifier: str = ""  # the final linear layer's module
    pool_size: tuple[int, int] | None = None  # H x W of forward_features at input_size (model.pretrained_cfg)
    fixed_input_size: bool = False  # the network takes input_size only (its head needs an exact map size)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def img_size(self) -> int:
        return self.input_size[-1]


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}
_MODULES: dict[str, str] = {}  # name -> its family's module ("resnet", "vgg", ...)


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
        _CFGS[fn.__name__] = ModelCfg(**cfg, architecture=fn.__name__)
        _MODULES[fn.__name__] = fn.__module__.rpartition(".")[2]
        return fn

    return register(fn) if fn is not None else register


def _patterns(filters: str | Sequence[str]) -> list[str]:
    return [filters] if isinstance(filters, str) else list(filters)


def list_models(
    filter: str | Sequence[str] = "",
    module: str | Sequence[str] = "",
    pretrained: bool = False,
    exclude_filters: str | Sequence[str] = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """Registered model names, sorted, with timm's filters.

    Args:
        filter: fnmatch pattern(s) a name must match (any of them); ``""`` for all.
        module: family module(s) the model must come from (``"resnet"``, ``["vgg", "alexnet"]``).
        pretrained: only models with published weights (see ``cnnzoo.weights``).
        exclude_filters: pattern(s) that remove names.
        name_matches_cfg, include_tags: timm's; every cnnzoo name has its own cfg and there are
            no weight tags in names, so they change nothing.
    """
    names = [n for n in _MODELS if not filter or any(fnmatch.fnmatch(n, p) for p in _patterns(filter))]
    if module:
        names = [n for n in names if _MODULES[n] in _patterns(module)]
    if exclude_filters:
        names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in _patterns(exclude_filters) if p)]
    if pretrained:
        from .hub import pretrained_tags

        names = [n for n in names if pretrained_tags(n)]
    return sorted(names)


def list_pretrained(filter: str | Sequence[str] = "", exclude_filters: str | Sequence[str] = "") -> list[str]:
    """``NAME.TAG`` of every published weight file, filtered as ``list_models`` (timm's ``list_pretrained``)."""
    from .hub import list_pretrained as tagged

    names = [n for n in tagged() if not filter or any(fnmatch.fnmatch(n, p) for p in _patterns(filter))]
    return [n for n in names if not any(fnmatch.fnmatch(n, p) for p in _patterns(exclude_filters) if p)]


def list_modules() -> list[str]:
    """The family modules that register models."""
    return sorted(set(_MODULES.values()))


def is_model(name: str) -> bool:
    return name in _MODELS


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered builder of ``name``."""
    return _MODELS[_lookup(name)]


def _lookup(name: str) -> str:
    if name in _MODELS:
        return name
    close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown model {name!r}{hint} (`cnnzoo list` shows all {len(_MODELS)})")


def model_cfg(name: str) -> ModelCfg:
    """The registered input spec and reference figures of ``name``."""
    return _CFGS[_lookup(name)]


get_pretrained_cfg = model_cfg  # timm's name


def get_pretrained_cfg_value(name: str, key: str) -> Any:
    """One entry of ``name``'s cfg (None if the cfg has no such key), as timm's."""
    return model_cfg(name).get(key)


def _first_conv(model: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), "")


def create_model(
    name: str,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    global_pool: str | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    pretrained_cfg: Mapping | None = None,
    pretrained_cfg_overlay: Mapping | None = None,
    feature_cls: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model (timm's ``create_model``).

    ``num_classes`` and ``in_chans`` default to the model's own (1000 and 3 for
    the ImageNet models, 10 classes for the CIFAR ones, 1 channel for LeNet-5);
    ``num_classes=0`` leaves no classifier (the model returns pooled features).
    ``global_pool`` is ``"avg"``, ``"max"``, ``"avgmax"`` or ``""`` (no pooling, with
    ``num_classes=0``). ``pretrained=True`` loads the model's default published weights (or those
    of TAG when ``name`` is ``NAME.TAG``, as in timm), a string the weights of that tag
    (``cnnzoo.hub`` lists them).
    ``features_only=True`` returns a ``FeatureNet`` giving the feature maps of the stages
    ``out_indices`` (default all; see ``model.feature_info``). ``pretrained_cfg`` replaces
    the registered cfg, ``pretrained_cfg_overlay`` changes some of its keys.
    Other keywords go to the family's constructor; one it does not take is an error. The stochastic-depth
    keywords ``drop_path_rate / _mode / _schedule / _inverted`` become one ``drop_path=DropPathSpec(...)``.
    """
    name, _, tag = name.partition(".")
    name = _lookup(name)
    builder, cfg = _MODELS[name], _CFGS[name]
    if pretrained_cfg is not None:
        cfg = dataclasses.replace(cfg, **dict(pretrained_cfg))
    if pretrained_cfg_overlay:
        unknown = set(pretrained_cfg_overlay) - set(cfg)
        if unknown:
            raise ValueError(f"pretrained_cfg_overlay: unknown keys {sorted(unknown)}; the cfg has {sorted(cfg)}")
        cfg = dataclasses.replace(cfg, **dict(pretrained_cfg_overlay))
    if feature_cls not in (None, "getter", "list"):
        raise ValueError(f"feature_cls={feature_cls!r}: cnnzoo's features_only gives the stages' maps as a list "
                         "(feature_cls None, 'getter' or 'list')")
    num_classes = cfg.num_classes if num_classes is None else num_classes
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if global_pool == "" and num_classes:
        raise ValueError("global_pool='' leaves the feature map unpooled: it needs num_classes=0")
    in_chans = cfg.in_chans if in_chans is None else in_chans
    kwargs = drop_path_from_keywords(kwargs)
    check_keywords(name, {"num_classes": num_classes or cfg.num_classes, "in_chans": in_chans, **kwargs})  # 0: no head
    try:
        # num_classes=0 builds the usual head, then removes it (after any weights are loaded)
        model = builder(num_classes=num_classes or cfg.num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        if not kwargs:
            raise
        fixed = re.search(r"multiple values for (?:keyword )?argument '(\w+)'", str(e))
        if fixed:
            raise ValueError(f"{name} sets {fixed[1]!r} itself; it cannot be given (another registered name may"
                             f" have the {fixed[1]} you want: `cnnzoo list`)") from e
        raise ValueError(f"{name}: {e}; it accepts: {', '.join(accepted_keywords(name) or ['see its family'])}") from e
    model.default_cfg = dataclasses.replace(
        cfg, num_classes=num_classes, input_size=(in_chans, *cfg.input_size[1:]),
        first_conv=_first_conv(model), classifier=getattr(model, "classifier", ""),
    )
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(model, name, (tag or None) if pretrained is True else pretrained)
    if num_classes == 0:
        model.reset_classifier(0)
    if global_pool is not None:
        model.set_global_pool(global_pool)
    if features_only:
        model = model.feature_net(out_indices)
    return model


def _family(name: str) -> type | None:
    """The class that ``name``'s builder returns, from its return annotation (None where it has none)."""
    try:
        cls = typing.get_type_hints(_MODELS[name]).get("return")
    except Exception:  # an annotation that does not resolve: nothing to check against
        return None
    return cls if isinstance(cls, type) else None


def _constructor_hints(name: str) -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
    """The keyword parameters of ``name``'s family constructor (and its builder), and their type hints.

    A constructor that passes ``**kwargs`` on to its base class adds the base's parameters. Empty when they
    cannot be known: no annotated family, or ``**kwargs`` that reach ``nn.Module``.
    """
    family = _family(name)
    if family is None:
        return {}, {}
    inits = [_MODELS[name]]
    for cls in family.__mro__:
        if "__init__" not in vars(cls):
            continue
        if cls in (nn.Module, object):
            return {}, {}
        inits.append(cls.__init__)
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
            break
    params, hints = {}, {}
    for fn in reversed(inits):  # the most derived signature wins
        params.update({p.name: p for p in inspect.signature(fn).parameters.values()
                       if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)})
        try:
            hints.update(typing.get_type_hints(fn))
        except Exception:  # a hint that does not resolve: the names are still known
            pass
    hints.pop("return", None)
    return params, hints


def accepted_keywords(name: str) -> list[str]:
    """The keywords ``create_model(name, ...)`` takes (its family constructor's), sorted; [] where unknown."""
    return sorted(_constructor_hints(_lookup(name))[0])


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits the type hint ``tp``; hints this cannot judge (classes, callables) accept anything."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list) or tp in (tuple, list):
        return isinstance(value, (tuple, list))
    return True


def check_keywords(name: str, kwargs: dict[str, Any]) -> None:
    """Each keyword for ``name``'s constructor exists and fits its type hint; else a one-line ValueError
    naming what is accepted."""
    params, hints = _constructor_hints(name)
    if not params:
        return
    for key, value in kwargs.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name} takes no keyword {key!r}{hint}; it accepts: {', '.join(sorted(params))}")
        if key in hints and not _fits(value, hints[key]):
            raise ValueError(f"{name}: {key} must be {_describe(hints[key])}, got {value!r}")
    for key in ("num_classes", "in_chans"):
        if key in kwargs and (not isinstance(kwargs[key], int) or isinstance(kwargs[key], bool) or kwargs[key] < 1):
            raise ValueError(f"{name}: {key} must be a positive integer, got {kwargs[key]!r}")
