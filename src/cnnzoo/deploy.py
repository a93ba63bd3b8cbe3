"""Inference-ready copies of models (``cnnzoo.deploy``) and their export to ONNX or TorchScript.

``deploy(model)`` works on any module, whatever its family, by following the
data flow of one traced forward pass rather than family-specific rules:

- A batch norm whose only input is a convolution's output, where nothing else
  reads that output, is folded into the convolution (its scale into the
  weights, its shift into the bias) and replaced by ``nn.Identity``. A conv
  or BN called more than once (shared weights, as in PolyNet's poly-3) is
  left alone: one conv cannot absorb two BNs.
- Dropout becomes ``nn.Identity``; modules that an eval forward never runs
  (auxiliary classifiers) are removed, and an ``aux_logits`` flag is switched off.
- Weights go to channels_last where there are 2-D convolutions (oneDNN's and
  cuDNN's faster layout; the first conv then emits channels_last itself).

The copy computes the same logits as the original in eval mode (to float
rounding) and is meant for inference only.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .analysis.complexity import Trace, example_input, trace
from .files import atomic_path, atomic_write

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Reading a tensor's metadata is not a use of its values.
_METADATA = frozenset({"__get__", "size", "dim", "numel", "stride", "is_contiguous"})


def conv_bn_pairs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the BN reads the conv's output and nothing else does.

    Found by tracing one image through a meta-device twin of the model (no compute).
    """
    return _conv_bn_pairs(_trace_twin(model, input_size))


def _meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the meta device (no data is copied)."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    return copy.deepcopy(model, memo)


def _trace_twin(model: nn.Module, input_size) -> Trace:
    """The data flow of one eval forward, traced on a meta twin; on the model itself where meta cannot run it."""
    try:
        return trace(_meta_twin(model), input_size, record_ops=True)
    except (RuntimeError, NotImplementedError):  # an op without a meta kernel, or data-dependent Python
        return trace(model, input_size, record_ops=True)


def _conv_bn_pairs(tr: Trace) -> list[tuple[str, str]]:
    calls_of: dict[str, int] = {}
    for call in tr.calls:
        calls_of[call.name] = calls_of.get(call.name, 0) + 1
    produced_by = {t: c.name for c in tr.calls if isinstance(c.module, _CONVS) for t in c.outputs}
    users: dict[int, set[str]] = {}  # conv output id -> modules whose forward read it
    for op in tr.ops:
        if op.name not in _METADATA:
            for t in op.inputs:
                if t in produced_by:
                    users.setdefault(t, set()).add(op.module)
    pairs = []
    for call in tr.calls:
        if not isinstance(call.module, _NORMS) or not call.inputs or call.inputs[0] not in produced_by:
            continue
        conv = produced_by[call.inputs[0]]
        if users.get(call.inputs[0]) == {call.name} and calls_of[conv] == calls_of[call.name] == 1:
            pairs.append((conv, call.name))
    return pairs


@torch.no_grad()
def fold_bn(conv: nn.Module, bn: nn.Module) -> None:
    """Fold an eval-mode batch norm into the conv before it: conv(x) -> bn(conv(x)).

    The per-channel scale and shift are computed in float64; the weights are scaled in place, one rounding each.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it keeps no running statistics (track_running_stats=False)")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    shift = (bias - bn.running_mean.double()) * scale + (bn.bias.double() if bn.affine else 0)
    conv.weight.mul_(scale.to(conv.weight.dtype).reshape(-1, *(1,) * (conv.weight.dim() - 1)))
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def _replace(model: nn.Module, name: str, new: nn.Module | None) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def deploy(model: nn.Module, input_size: int | tuple[int, int, int] | None = None,
           channels_last: bool | None = None, compile: bool = False) -> nn.Module:
    """An inference-ready copy of ``model`` (see the module docstring); the original is left as it is.

    ``input_size`` (default: the model's ``default_cfg``) is what the trace runs
    at; ``channels_last=None`` chooses it when the model has 2-D convolutions.
    ``compile=True`` also wraps the copy in ``torch.compile`` with inductor's
    weight freezing (prepacked oneDNN weights, conv+ReLU fused); it compiles on
    the first call, which takes a while, and needs a C++ compiler on the CPU.
    """
    model = copy.deepcopy(model).eval()
    if isinstance(getattr(model, "aux_logits", None), bool):
        model.aux_logits = False
    tr = _trace_twin(model, input_size)
    for conv, bn in _conv_bn_pairs(tr):
        fold_bn(model.get_submodule(conv), model.get_submodule(bn))
        _replace(model, bn, nn.Identity())
    for name, module in list(model.named_modules()):
        if isinstance(module, _DROPOUTS):
            _replace(model, name, nn.Identity())

    # Remove what eval never runs (auxiliary heads); inside a container it stays, as its index matters.
    used = {""}
    for call in tr.calls:
        parts = call.name.split(".")
        used.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    for name, module in list(model.named_modules()):
        parent = name.rpartition(".")[0]
        if name not in used and parent in used and not isinstance(model.get_submodule(parent), _CONTAINERS) \
                and next(module.parameters(), None) is not None:
            _replace(model, name, None)

    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model, options={"freezing": True}) if compile else model


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Deprecated: ``import_weights(model, cnnzoo.files.load_file(path)[0])`` (one loader for every weight file)."""
    import warnings

    from .files import load_file
    from .weights import import_weights

    warnings.warn("cnnzoo.deploy.load_checkpoint is deprecated; use cnnzoo.files.load_file with"
                  " cnnzoo.weights.import_weights", DeprecationWarning, stacklevel=2)
    return import_weights(model, load_file(path)[0])


EXPORT_FORMATS = ("onnx", "torchscript")


def require_onnx() -> None:
    """A one-line ValueError naming the extra to install, unless torch's ONNX exporter can run here."""
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ValueError(f"ONNX export needs {' and '.join(missing)}: pip install 'cnnzoo[onnx]'"
                         " (or use --format torchscript)")


def export(model: nn.Module, path: str | Path, fmt: str = "onnx",
           input_size: int | tuple[int, int, int] | None = None) -> Path:
    """Write ``model`` (in eval mode) as ONNX (opset 18, dynamic batch) or a traced TorchScript file."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "onnx":
        require_onnx()
    path = Path(path)
    model = model.eval()
    x = example_input(model, input_size, batch_size=2).normal_()
    if fmt == "onnx":
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
        with atomic_path(path) as tmp:
            program.save(str(tmp))
    else:
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
        atomic_write(path, lambda f: torch.jit.save(traced, f))
    return path
