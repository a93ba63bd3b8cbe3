"""The training configuration: one typed, documented dataclass (pycls ``core/config.py``).

A run's config is built in layers, each overriding the one before:
the defaults below (the no-argument run: ResNet-20 on the embedded digits),
a recipe (a YAML file, or one packaged in ``cnnzoo/configs/``, by name),
the command-line flags, then ``KEY=VALUE`` pairs. The resolved config is
written as ``config.yaml`` into the run folder, so ``--resume`` and
``cnnzoo eval`` rebuild exactly the same run.

Values are checked against the field types and every number against its
range (``RANGES``) as the config is read; an unknown key, a wrong type or a
value out of range is a ``ConfigError``, one line naming the key, the value
and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad config key or value; the message names it and what would be valid."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. The defaults train ResNet-20 on digits in a few CPU minutes."""

    # --- model
    model: str = "resnet20"  # registered model name (`cnnzoo list`)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra keywords for the model's constructor
    drop_path_rate: float = 0.0  # stochastic depth 1 - p_L (0.5 = the paper's p_L 0.5); 0 = off
    num_classes: int | None = None  # classifier outputs; None = the data set's class count (must agree if set)
    init_weights: str | None = None  # start from these weights (.safetensors or .ckpt of this model), e.g. fine-tuning
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm (batch statistics over all GPUs)

    # --- data (see cnnzoo.data.build_data)
    data: str = "digits"  # data spec: digits | cifar10[:PATH] | cifar100[:PATH] | folder:PATH | PATH
    img_size: int | None = None  # square input side; None = the data set's natural size
    augment: str = "auto"  # none | cifar | inception | alexnet | vgg | auto (the data set's usual one)
    eval_crops: Literal["center", "ten"] = "center"  # test-time crops: one center crop or AlexNet's ten
    workers: int = 2  # DataLoader worker processes for large image folders
    strict_data: bool = False  # fail before training if any image file is unreadable (default: skip and list)

    # --- optimisation
    epochs: int = 10  # passes over the training set
    batch_size: int = 64  # global mini-batch, split evenly across DDP processes (one step: x accumulate)
    accumulate: int = 1  # sum gradients over this many batches per optimizer step (a batch of k x batch_size)
    optimizer: Literal["sgd", "rmsprop_tf", "rmsprop"] = "sgd"  # rmsprop_tf: eps inside the sqrt (Inception, PolyNet)
    lr: float = 0.1  # peak learning rate (after warmup)
    momentum: float = 0.9  # SGD / RMSProp momentum
    nesterov: bool = True  # Nesterov momentum (SGD)
    weight_decay: float = 5e-4  # L2 penalty added to the gradient
    rmsprop_decay: float = 0.9  # RMSProp moving-average decay of squared gradients (TF's `decay`, torch's alpha)
    rmsprop_eps: float = 1.0  # RMSProp epsilon (1.0 in the Inception-v3/v4 and PolyNet training)
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0.1 in Inception-v3); 0 = off
    aux_weight: float = 0.3  # weight of each auxiliary head's loss (GoogLeNet: 0.3)
    ema_decay: float = 0.0  # Polyak average of the weights and BN statistics, also evaluated (e.g. 0.9999); 0 = off

    # --- learning-rate schedule (see cnnzoo.engine.optim.Schedule)
    schedule: Literal["constant", "step", "multistep", "exponential", "cosine", "linear"] = "cosine"  # after warmup
    schedule_unit: Literal["epoch", "iter"] = "epoch"  # unit of step_size, milestones and warmup
    step_size: float = 30  # step/exponential: multiply by gamma every step_size units
    milestones: list[float] = field(default_factory=list)  # multistep: multiply by gamma at each of these
    gamma: float = 0.1  # step/multistep/exponential factor (0.94 with step_size 2 for Inception's exponential)
    min_lr: float = 0.0  # cosine / linear: learning rate at the end of training
    warmup: float = 1.0  # linear warmup length in schedule_unit (0 = none)
    warmup_start: float = 0.1  # warmup starts at lr x warmup_start

    # --- hardware
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else CPU
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # mixed precision; auto: bf16 on CUDA (fp16 if unsupported)
    channels_last: bool = True  # NHWC memory format for models with 2-D convs (faster on cuDNN and oneDNN CPUs)
    compile: bool = False  # torch.compile the model (CUDA)
    deterministic: bool = False  # deterministic kernels (cuDNN); CPU training is deterministic already

    # --- run folder, checkpoints, logging
    out: str = "runs"  # parent folder of run folders
    name: str | None = None  # run folder name; None = MODEL-DATA-TIMESTAMP
    seed: int = 0  # seeds weights, data order, augmentation, dropout and stochastic-depth gates
    checkpoint_every: int = 0  # also checkpoint every N training steps (0 = only at the end of each epoch)
    log_every: int = 50  # steps between log points, the only steps that wait for the device (progress, NaN check)
    stop_after: int = 0  # stop (checkpointed, resumable) after this many epochs in this session; 0 = run to the end
    eval_every: int = 1  # evaluate on the test split every N epochs (and always after the last)
    grad_flow: bool = False  # log each residual block's mean |gradient| per epoch (grad_flow.csv/.png)
    tensorboard: bool = True  # write TensorBoard event files into the run folder


@dataclass(frozen=True)
class Range:
    """The valid values of a number: ``low``/``high`` bounds (None: unbounded), each included unless ``open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.low is None or (x > self.low if self.low_open else x >= self.low)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


ABOVE_0, AT_LEAST_0, AT_LEAST_1, FRACTION = Range(0, low_open=True), Range(0), Range(1), Range(0, 1, high_open=True)

# The valid range of every numeric key (a list's range applies to each of its items); tests check none is missing.
RANGES: dict[str, Range] = {
    "drop_path_rate": FRACTION, "num_classes": AT_LEAST_1, "img_size": AT_LEAST_1, "workers": AT_LEAST_0,
    "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": ABOVE_0, "momentum": FRACTION, "weight_decay": AT_LEAST_0,
    "rmsprop_decay": FRACTION, "rmsprop_eps": ABOVE_0, "label_smoothing": FRACTION, "aux_weight": AT_LEAST_0,
    "step_size": ABOVE_0, "milestones": AT_LEAST_0, "gamma": ABOVE_0, "min_lr": AT_LEAST_0, "warmup": AT_LEAST_0,
    "warmup_start": Range(0, 1), "seed": AT_LEAST_0, "checkpoint_every": AT_LEAST_0, "stop_after": AT_LEAST_0,
    "eval_every": AT_LEAST_1, "log_every": AT_LEAST_1, "accumulate": AT_LEAST_1, "ema_decay": FRACTION,
}


def check_range(key: str, value: Any) -> None:
    """A ConfigError when a number of ``key`` is not finite or falls outside ``RANGES[key]``."""
    for x in value if isinstance(value, list) else [value]:
        if isinstance(x, float) and not math.isfinite(x):
            raise ConfigError(f"config key {key!r} must be a finite number, got {x!r}")
        if key in RANGES and x is not None and x not in RANGES[key]:
            raise ConfigError(f"config key {key!r} is out of range: got {x!r}, valid {RANGES[key]}")


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or a ConfigError naming ``key``.

    Numeric strings are accepted: YAML reads 1e-4 (no dot) as a string.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in args:
            return value
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(key, v, args[0]) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp in (int, float):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = tp(value)
            except ValueError:
                raise bad from None
        if tp is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) or (tp is float and isinstance(value, float)):
            return tp(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"TrainConfig field {key!r} has an unsupported type {tp}")


def _unknown_key(key: str, where: str) -> ConfigError:
    names = field_names()
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}; valid keys: {', '.join(names)}")


def apply(cfg: TrainConfig, values: dict[str, Any], where: str = "overrides") -> TrainConfig:
    """A copy of ``cfg`` with ``values`` set, each checked against its field's type.

    A dotted key sets one entry of a mapping field: ``model_kwargs.aux_logits``.
    """
    hints = typing.get_type_hints(TrainConfig)
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name, _, sub = key.partition(".")
        if name not in hints:
            raise _unknown_key(name, where)
        if sub:
            if typing.get_origin(hints[name]) is not dict:
                raise ConfigError(f"config key {name!r} is not a mapping, so {key!r} cannot be set")
            changes[name] = {**changes.get(name, getattr(cfg, name)), sub: value}
        else:
            changes[name] = _coerce(name, value, hints[name])
            check_range(name, changes[name])
    return dataclasses.replace(cfg, **changes)


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "milestones=[250, 375]"]`` -> ``{"lr": 0.1, "milestones": [250, 375]}`` (values read as YAML)."""
    out = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"expected KEY=VALUE, got {pair!r} (e.g. lr=0.05 or milestones=[30,60])")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot read the value of {pair!r}: {str(e).splitlines()[0]}") from None
    return out


RECIPES = resources.files("cnnzoo") / "configs"  # the papers' recipes, shipped inside the package


def recipes() -> dict[str, str]:
    """The packaged recipes: name -> one-line description (the first comment line of the YAML file)."""
    out = {}
    for entry in sorted(RECIPES.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = entry.read_text(encoding="utf-8").partition("\n")[0]
            out[entry.name.removesuffix(".yaml")] = first.lstrip("# ").strip()
    return out


def recipes_of(model: str) -> list[str]:
    """The packaged recipes that train ``model`` (their ``model:`` field)."""
    return [name for name in recipes()
            if yaml.safe_load((RECIPES / f"{name}.yaml").read_text(encoding="utf-8")).get("model") == model]


def find_recipe(name_or_path: str | Path) -> Path:
    """A YAML file: ``name_or_path`` itself where that file exists, else the packaged recipe of that name
    (``resnet_cifar10`` or ``resnet_cifar10.yaml``); a ConfigError listing the recipes otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = RECIPES / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if packaged.is_file() and path.parent == Path("."):
        return Path(str(packaged))
    if packaged.is_file() and path.parent.name == "configs":  # the checkout's old configs/NAME.yaml
        warnings.warn(f"recipes moved into the package: give --config {packaged.name.removesuffix('.yaml')}"
                      f" instead of {str(path)!r} (the old path stops working in the next release)",
                      DeprecationWarning, stacklevel=2)
        return Path(str(packaged))
    names = list(recipes())
    close = difflib.get_close_matches(path.stem, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"no config file {str(path)!r} and no packaged recipe of that name{hint}; recipes:"
                      f" {', '.join(names)} (`cnnzoo recipes`)")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, found {type(values).__name__}")
    return values


def load_config(path: str | Path | None = None, *overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (or the packaged recipe of that name), then each mapping of
    ``overrides`` in turn."""
    cfg = TrainConfig()
    if path is not None:
        cfg = apply(cfg, read_yaml(find_recipe(path)), where=str(path))
    for values in overrides:
        cfg = apply(cfg, values)
    return cfg


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML, in field order (what ``config.yaml`` holds)."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
