"""The interface every cnnzoo model has (timm's): features, head, resettable classifier and pooling,
feature maps by stage (``forward_intermediates``, ``features_only``), gradient checkpointing.

A family declares what the generic code needs and nothing more: ``forward_features``,
``forward_head``, ``num_features``, the attribute holding its last linear layer
(``classifier``), its pooling as ``self.global_pool`` (a ``SelectAdaptivePool2d``) and
``self.feature_info``, one dict per stage (timm's convention)::

    dict(num_chs=C, reduction=R, module="dotted.submodule.name")

the output of that submodule being the stage's feature map (C channels at
input_size / R), the last entry being the output of ``forward_features``. Every
stage-wise method here works from that list alone: ``forward_intermediates``
catches the stages' outputs with forward hooks, ``prune_intermediate_layers``
removes what runs after the last wanted stage, ``set_grad_checkpointing``
recomputes each stage in backward.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager, nullcontext
from itertools import chain
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layers import SelectAdaptivePool2d


def feature_take_indices(num_features: int, indices: int | Sequence[int] | None = None) -> tuple[list[int], int]:
    """timm's meaning of ``indices``: None every stage, an int n the last n, a sequence those (negative from
    the end). Returns the indices, made non-negative, and the largest."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"indices={indices}: the model has {num_features} feature stages; ask for 1 to that many")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            j = i + num_features if i < 0 else i
            if not 0 <= j < num_features:
                raise ValueError(f"feature index {i} is out of range for {num_features} stages "
                                 f"(use 0..{num_features - 1}, or negative from the end)")
            take.append(j)
    return take, max(take)


class FeatureInfo:
    """The stages a feature extractor returns: channels, reduction and module name of each (timm's FeatureInfo).

    ``info`` holds every stage of the model; the ``idx``-less accessors answer for ``out_indices``.
    """

    def __init__(self, feature_info: Sequence[Mapping], out_indices: int | Sequence[int] | None = None):
        self.info = [dict(fi, index=i) for i, fi in enumerate(feature_info)]
        self.out_indices = tuple(feature_take_indices(len(self.info), out_indices)[0])

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None):
        picked = self.out_indices if idx is None else (idx,) if isinstance(idx, int) else idx
        dicts = [self.info[i] if keys is None else {k: self.info[i][k] for k in keys} for i in picked]
        return dicts[0] if isinstance(idx, int) else dicts

    def channels(self, idx=None):
        return self.get("num_chs", idx)

    def reduction(self, idx=None):
        return self.get("reduction", idx)

    def module_name(self, idx=None):
        return self.get("module", idx)

    def __getitem__(self, item):
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.get_dicts(('num_chs', 'reduction', 'module'))})"


class _StopForward(Exception):
    """Raised by a stage's hook once every wanted stage has run, to skip the rest of the network."""


class Pruned(nn.Module):
    """Stands in for a module removed by ``prune_intermediate_layers``; calling it is an error."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} was removed by prune_intermediate_layers: this model now only serves "
                           "forward_intermediates(..., intermediates_only=True) up to its last kept stage")

    def extra_repr(self) -> str:
        return self.name


@contextmanager
def _restored_running_stats(module: nn.Module) -> Iterator[None]:
    """Undo what a recomputed training-mode forward does to batch-norm statistics (one batch counts once)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for buffer, value in zip(m.buffers(), buffers):
                    buffer.copy_(value)


def _checkpointed_forward(module: nn.Module, *args, **kwargs):
    """``module``'s own forward, recomputed in backward instead of keeping its activations."""
    forward = type(module).forward.__get__(module)
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs,
                      context_fn=lambda: (nullcontext(), _restored_running_stats(module)))


class _Probe(nn.Module):
    """``forward_features`` (then ``forward_head`` too, if ``head``) as a module ``functional_call`` can run;
    ``between()`` is called when the features are ready."""

    def __init__(self, model: nn.Module, head: bool, between):
        super().__init__()
        self.model, self.head, self.between = model, head, between

    def forward(self, x: Tensor) -> Tensor:
        features = self.model.forward_features(x)
        self.between()
        if self.head:
            self.model.forward_head(features)
        return features


class ImageClassifier(nn.Module):
    """Base of every cnnzoo network (see the module docstring for what a family provides).

    ``forward_head(x, pre_logits=True)`` returns the ``head_hidden_size``-wide input of
    the classifier (``num_features`` unless the head has hidden layers, as VGG's fc6-fc7);
    with the pool set to ``""`` it returns the unpooled feature map.
    """

    num_features: int
    classifier: str = "fc"  # attribute holding the final nn.Linear
    feature_info: list[dict]

    # -- head -------------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier; 0 once it is removed (``reset_classifier(0)``)."""
        return getattr(self.get_classifier(), "out_features", 0)  # nn.Identity once removed

    @num_classes.setter
    def num_classes(self, value: int) -> None:
        # Families may say it while building; once the classifier exists, it decides.
        if self.classifier in self._modules and value != self.num_classes:
            raise AttributeError(f"num_classes follows the classifier ({self.num_classes}); "
                                 "use reset_classifier(num_classes) to change it")

    @property
    def head_hidden_size(self) -> int:
        """Width of ``forward_head(x, pre_logits=True)`` (what the classifier reads)."""
        return self.__dict__.get("_head_hidden_size") or self.num_features

    @head_hidden_size.setter
    def head_hidden_size(self, width: int) -> None:
        self.__dict__["_head_hidden_size"] = width

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A freshly initialised final layer with ``num_classes`` outputs, or none for 0 (the model then
        returns pooled features); ``global_pool`` (``"avg"``, ``"max"``, ``"avgmax"``, ``""``) also
        changes the pooling, ``""`` meaning the unpooled feature map (with ``num_classes=0`` only)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool is not None:
            self.set_global_pool(global_pool)
        pool = getattr(self, "global_pool", None)
        if num_classes and isinstance(pool, SelectAdaptivePool2d) and pool.is_identity():
            raise ValueError(f"num_classes={num_classes} needs pooled features; global_pool='' passes the "
                             "feature map through: use num_classes=0 with it, or another pool")
        if num_classes == 0:
            setattr(self, self.classifier, nn.Identity())
            return
        p = next(self.parameters(), None)
        setattr(self, self.classifier, nn.Linear(self.head_hidden_size, num_classes,
                                                 device=p.device if p is not None else None,
                                                 dtype=p.dtype if p is not None else None))

    def set_global_pool(self, global_pool: str) -> None:
        """Change the pooling before the head to ``global_pool``, keeping its output size."""
        pool = getattr(self, "global_pool", None)
        if not isinstance(pool, SelectAdaptivePool2d):
            raise ValueError(f"{type(self).__name__} has no selectable pooling (self.global_pool is not a "
                             f"SelectAdaptivePool2d); global_pool={global_pool!r} cannot be applied")
        self.global_pool = SelectAdaptivePool2d(global_pool, pool.output_size, pool.flatten)

    # -- config -----------------------------------------------------------------------------------

    @property
    def default_cfg(self):
        """The model's input spec and reference figures (``cnnzoo.ModelCfg``, readable as a dict), with
        ``pool_size`` (the spatial size of ``forward_features`` at ``input_size``) measured on first use."""
        cfg = self.__dict__.get("_default_cfg")
        if cfg is not None and cfg.get("pool_size") is None and cfg.get("input_size"):
            pool_size = tuple(self._shape_probe(tuple(cfg["input_size"]))[0][-2:])
            cfg = dataclasses.replace(cfg, pool_size=pool_size) if dataclasses.is_dataclass(cfg) \
                else {**cfg, "pool_size": pool_size}
            self.__dict__["_default_cfg"] = cfg
        return cfg

    @default_cfg.setter
    def default_cfg(self, cfg) -> None:
        self.__dict__["_default_cfg"] = cfg

    @property
    def pretrained_cfg(self):
        """timm's ``pretrained_cfg``: the loaded weights' entry (``cnnzoo.hub``: their preprocessing, classes
        and published accuracy) once ``pretrained=True`` has set it, else ``default_cfg``."""
        weights = self.__dict__.get("_weights_cfg")
        return self.default_cfg if weights is None else weights

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg) -> None:
        self.__dict__["_weights_cfg"] = cfg

    def _shape_probe(self, input_size: tuple[int, ...], head: bool = False
                     ) -> tuple[torch.Size, list[tuple[str, int, int]], int]:
        """Run ``forward_features`` (and ``forward_head`` if ``head``) on the meta device, in eval mode:
        no compute, the weights untouched.

        Returns the features' shape; every module call as (name, first entry, exit) positions
        in call order, which tells what runs after what; and the position where ``forward_features`` ended.
        """
        names = {id(m): name for name, m in self.named_modules()}
        calls: dict[str, list[int]] = {}
        clock = iter(range(10**9))
        features_end = []

        def enter(module, args):
            if id(module) in names and names[id(module)] not in calls:
                calls[names[id(module)]] = [next(clock), -1]

        def leave(module, args, output):
            if id(module) in names and calls[names[id(module)]][1] < 0:
                calls[names[id(module)]][1] = next(clock)

        tensors = {f"model.{k}": torch.empty_like(v, device="meta") for k, v in chain(
            self.named_parameters(), self.named_buffers())}  # one name per shared tensor: functional_call ties the rest
        modes = {m: m.training for m in self.modules()}
        handles = [nn.modules.module.register_module_forward_pre_hook(enter),
                   nn.modules.module.register_module_forward_hook(leave)]
        try:
            self.eval()
            with torch.no_grad():
                out = torch.func.functional_call(_Probe(self, head, lambda: features_end.append(next(clock))), tensors,
                                                 (torch.empty(1, *input_size, device="meta"),))
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes.items():
                m.training = mode
        return out.shape, [(name, start, end) for name, (start, end) in calls.items() if name], features_end[0]

    # -- feature maps by stage ------------------------------------------------------------------

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The feature maps of the stages ``indices`` (``feature_take_indices``), with timm's meanings.

        Returns ``(forward_features(x), [maps])``, or only the maps with ``intermediates_only``.
        With ``stop_early`` (always, with ``intermediates_only``) nothing runs past the last wanted
        stage, and the first element is that stage's map. ``norm`` is accepted for timm's signature:
        these networks have no separate final norm. ``output_fmt`` is ``"NCHW"`` or ``"NHWC"``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        last = len(self.feature_info) - 1
        take, max_index = feature_take_indices(last + 1, indices)
        stop = (stop_early or intermediates_only) and max_index < last
        maps: dict[int, Tensor] = {}

        def catch(i: int, module, args, output) -> None:
            if i not in maps:
                maps[i] = output
                if stop and i == max_index:
                    raise _StopForward

        handles = [self.get_submodule(self.feature_info[i]["module"]).register_forward_hook(
            functools.partial(catch, i)) for i in set(take) if i != last]
        try:
            final = self.forward_features(x)
            maps[last] = final
        except _StopForward:
            final = maps[max_index]
        finally:
            for h in handles:
                h.remove()
        out = [maps[i] for i in take]
        if output_fmt == "NHWC":
            out = [t.permute(0, 2, 3, 1) for t in out]
        return out if intermediates_only else (final, out)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Remove every module that runs after the last of the stages ``indices`` (and, with
        ``prune_head``, the head: the classifier becomes the identity). Returns the kept indices.

        ``prune_norm`` is accepted for timm's signature (no separate final norm here).
        """
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        cfg = self.__dict__.get("_default_cfg") or {}
        _, calls, features_end = self._shape_probe(
            tuple(cfg.get("input_size") or (self._in_chans(), 224, 224)), head=True)
        # the last stage is forward_features' output: it ends where forward_features does
        cut = features_end if max_index == len(self.feature_info) - 1 else \
            next(end for name, _, end in calls if name == self.feature_info[max_index]["module"])
        after = {name for name, start, _ in calls if start > cut and (prune_head or start < features_end)}
        for name in after:
            parent, _, child = name.rpartition(".")
            prefixes = {name[:i] for i, c in enumerate(name) if c == "."}
            if not prefixes & after:  # only the outermost of the removed modules
                self.get_submodule(parent)._modules[child] = Pruned(name)
        if prune_head:
            setattr(self, self.classifier, nn.Identity())
            if hasattr(self, "global_pool"):
                self.global_pool = SelectAdaptivePool2d("")
        return take

    def _in_chans(self) -> int:
        first = next(m for m in self.modules() if isinstance(m, nn.Conv2d))
        return first.in_channels

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage of ``feature_info`` in backward instead of storing its activations
        (less memory, one more forward pass of compute; batch-norm statistics still move once)."""
        for info in self.feature_info:
            module = self.get_submodule(info["module"])
            if next(module.parameters(), None) is None:  # an activation or pool: nothing worth recomputing
                continue
            if enable:
                module.forward = functools.partial(_checkpointed_forward, module)
            elif "forward" in module.__dict__:
                del module.forward
        self.grad_checkpointing = enable

    def feature_net(self, out_indices: int | Sequence[int] | None = None) -> FeatureNet:
        """This model as a ``FeatureNet`` (what ``create_model(..., features_only=True)`` returns)."""
        return FeatureNet(self, out_indices)


class FeatureNet(nn.Module):
    """``create_model(..., features_only=True)``: the model's feature maps at ``out_indices``, as a list.

    The model is pruned after its last wanted stage and kept as ``self.model``;
    ``feature_info`` (a ``FeatureInfo``) describes the maps returned.
    """

    def __init__(self, model: ImageClassifier, out_indices: int | Sequence[int] | None = None):
        super().__init__()
        self.out_indices = tuple(model.prune_intermediate_layers(out_indices))  # None: every stage; the head goes
        self.model = model
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)

    @property
    def pretrained_cfg(self):
        return self.model.pretrained_cfg

    @property
    def default_cfg(self):
        return self.model.default_cfg

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(x, self.out_indices, intermediates_only=True)


def he_init_(model: nn.Module) -> None:
    """He et al.'s init (arXiv 1502.01852) for conv layers (fan-out, ReLU gain); batch norm to the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
