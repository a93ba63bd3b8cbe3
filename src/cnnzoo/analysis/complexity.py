"""Parameters and multiply-accumulates (MACs) of a model, counted from its real modules.

MACs are those of convolutions, linear layers and matrix products (torchvision's
``_ops`` and timm's ``gmacs`` convention), for one image in eval mode. One
forward pass runs under a torch function mode (``_Tracer``) that sees every
conv, linear and matmul call, whether a module or a functional call makes it,
and computes its MACs from the shapes: output elements times the
multiply-adds behind each (a conv's ``weight[0].numel()``, a linear layer's
``in_features``). Module hooks say which module each call belongs to and record
every module call's output shape. The counts equal
``torch.utils.flop_counter.FlopCounterMode``'s (tests/test_analysis_complexity.py
checks every registered model) at a fraction of its cost.

Models built on the meta device (``meta_model(name)``) are counted without
allocating or computing anything. There, two things that mean nothing on meta
are skipped because they are slow: random weight init (a Python decomposition
per tensor) and batch norm (its meta kernel too); both keep shapes, so no count
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..registry import create_model, model_cfg

# In-place initialisers (nn.init's and the Tensor methods they call): no-ops on meta tensors.
_INIT = frozenset({
    "normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
    "xavier_uniform_", "orthogonal_", "sparse_", "bernoulli_", "random_", "exponential_",
    "zeros_", "ones_", "constant_", "zero_", "fill_", "eye_", "dirac_",
})
_SHAPE_KEEPING_NORMS = frozenset({F.batch_norm})
_CONVS = frozenset({F.conv1d, F.conv2d, F.conv3d})
_CONV_TRANSPOSES = frozenset({F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d})
_MATMULS = frozenset({
    torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.mm, Tensor.mm, torch.bmm, Tensor.bmm,
})
_ADDMMS = frozenset({torch.addmm, Tensor.addmm, torch.baddbmm, Tensor.baddbmm})
# Ops with multiply-adds that this counter does not know how to count: an error beats a silent undercount.
_UNCOUNTED = frozenset({
    torch.einsum, torch.tensordot, F.bilinear, F.scaled_dot_product_attention, torch.convolution,
    torch.mv, Tensor.mv, torch.dot, Tensor.dot,
})


def _tensors(obj) -> list[Tensor]:
    """The tensors in a (nested) tuple, list or dict of arguments or outputs."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def _arg(args: tuple, kwargs: dict, i: int, key: str):
    return args[i] if len(args) > i else kwargs[key]


def _op_macs(func, args: tuple, kwargs: dict, out) -> int | None:
    """MACs of one torch call (``None``: not a counted op), from its arguments' and output's shapes."""
    if func in _CONVS:  # out: N x C_out x spatial; each output sums C_in/groups x kernel products
        return out.numel() * _arg(args, kwargs, 1, "weight")[0].numel()
    if func is F.linear:  # weight: out_features x in_features
        return out.numel() * _arg(args, kwargs, 1, "weight").shape[1]
    if func in _CONV_TRANSPOSES:  # each input element scatters into C_out/groups x kernel outputs
        return args[0].numel() * _arg(args, kwargs, 1, "weight")[0].numel()
    if func in _MATMULS:
        return out.numel() * args[0].shape[-1]
    if func in _ADDMMS:  # addmm(bias, a, b)
        return out.numel() * _arg(args, kwargs, 1, "mat1" if func in (torch.addmm, Tensor.addmm) else "batch1").shape[-1]
    if func in _UNCOUNTED:
        raise NotImplementedError(
            f"cnnzoo's MAC counter cannot count {getattr(func, '__name__', func)}; add it to _op_macs in "
            "cnnzoo/analysis/complexity.py (and check it against FlopCounterMode)"
        )
    return None


class _MetaShortcuts(TorchFunctionMode):
    """Skip what is meaningless and slow on meta tensors: random init, batch norm arithmetic."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
        if isinstance(first, Tensor) and first.is_meta:
            if getattr(func, "__name__", None) in _INIT:
                return first
            if func in _SHAPE_KEEPING_NORMS:
                return torch.empty_like(first)
        return func(*args, **kwargs)


def meta_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` on the meta device: shapes only, instant even for 100M parameters."""
    with torch.device("meta"), _MetaShortcuts():
        return create_model(name, **kwargs)


@dataclass
class ModuleCall:
    """One call of one module during the traced forward pass."""

    name: str  # qualified name in the model ("" = the model itself)
    module: nn.Module
    output_shape: tuple | None = None  # shape of the output tensor (first tensor of a tuple); None if it has none
    macs: int = 0  # MACs of everything this call ran, its submodules' included
    self_macs: int = 0  # MACs of the ops this module's own forward ran (not its submodules')
    depth: int = 0  # weight layers on the longest path from the input to this call's output
    inputs: list[int] = field(default_factory=list)  # id() of each input tensor
    outputs: list[int] = field(default_factory=list)  # id() of each output tensor


@dataclass
class Op:
    """One torch call made directly by a module's forward (calls nested inside it are not listed)."""

    name: str  # the function's name: conv2d, batch_norm, add, cat, ...
    module: str  # qualified name of the innermost module running it
    inputs: list[int]  # id() of each tensor argument
    outputs: list[int]


@dataclass
class Trace:
    """What one forward pass of one image did, module call by module call (in the order the calls ended)."""

    input_shape: tuple[int, ...] = ()  # N x C x H x W of the traced input
    calls: list[ModuleCall] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)  # only with trace(..., record_ops=True)
    tensors: list[Tensor] = field(default_factory=list, repr=False)  # keeps the ids in ops alive

    @property
    def total(self) -> ModuleCall:
        return self.calls[-1]  # the model's own call ends last

    def module_macs(self) -> dict[str, int]:
        macs: dict[str, int] = {}
        for call in self.calls:
            macs[call.name] = macs.get(call.name, 0) + call.macs
        return macs


class _Tracer(_MetaShortcuts):
    """Counts MACs of every conv/linear/matmul and tracks the weight-layer depth of every tensor."""

    def __init__(self, model: nn.Module, record_ops: bool):
        super().__init__()
        self.record_ops = record_ops
        self.trace = Trace()
        self.stack: list[ModuleCall] = []
        self.depth: dict[int, int] = {}  # id(tensor) -> weight layers behind it
        self.alive: list[Tensor] = []  # keeps traced tensors alive so their ids stay unique
        self.names = {id(m): name for name, m in model.named_modules()}
        # Two global hooks see every module call; far cheaper than two hooks per module on deep networks.
        self.handles = [
            nn.modules.module.register_module_forward_pre_hook(self._enter),
            nn.modules.module.register_module_forward_hook(self._leave),
        ]

    def _enter(self, module: nn.Module, args) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append(ModuleCall(name, module, inputs=[id(t) for t in _tensors(args)]))

    def _leave(self, module: nn.Module, args, output) -> None:
        if id(module) not in self.names:
            return
        call = self.stack.pop()
        tensors = _tensors(output)
        if tensors:
            call.output_shape = tuple(tensors[0].shape)
            call.depth = max(self.depth.get(id(t), 0) for t in tensors)
            call.outputs = [id(t) for t in tensors]
        self.trace.calls.append(call)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # torch disables a mode while its handler runs, so the torch calls an op makes inside are not seen here
        kwargs = kwargs or {}
        out = super().__torch_function__(func, types, args, kwargs)
        macs = _op_macs(func, args, kwargs, out)
        inputs = _tensors(args) + _tensors(kwargs)
        depth = max((self.depth.get(id(t), 0) for t in inputs), default=0)
        if macs is not None:
            for call in self.stack:
                call.macs += macs
            if self.stack:
                self.stack[-1].self_macs += macs
            if not _is_depthwise(func, args, kwargs):  # a depthwise conv counts with its pointwise conv
                depth += 1
        outputs = _tensors(out)
        for t in outputs:
            self.depth[id(t)] = depth  # an in-place op's output is among its inputs: depth counts it already
            self.alive.append(t)
        if self.record_ops:
            self.trace.ops.append(Op(getattr(func, "__name__", str(func)), self.stack[-1].name if self.stack else "",
                                     [id(t) for t in inputs], [id(t) for t in outputs]))
        return out

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _is_depthwise(func, args: tuple, kwargs: dict) -> bool:
    if func not in _CONVS:
        return False
    groups = _arg(args, kwargs, 6, "groups") if len(args) > 6 or "groups" in kwargs else 1
    return groups > 1 and groups == args[0].shape[1]


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights, biases, BN gamma and beta; not BN running statistics)."""
    return sum(p.numel() for p in model.parameters())


def example_input(model: nn.Module, input_size: int | tuple[int, int, int] | None = None,
                  batch_size: int = 1) -> Tensor:
    """Zeros of the model's input shape (default: its ``default_cfg``'s) on its device, in its dtype."""
    cfg = getattr(model, "default_cfg", None)
    if input_size is None:
        if cfg is None:
            raise ValueError("give input_size: this model was not built by create_model and has no default_cfg")
        input_size = cfg.input_size
    elif isinstance(input_size, int):
        input_size = (cfg.in_chans if cfg else 3, input_size, input_size)
    p = next(model.parameters(), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    return torch.zeros(batch_size, *input_size, device=device, dtype=dtype)


def trace(model: nn.Module, input_size: int | tuple[int, int, int] | None = None, record_ops: bool = False) -> Trace:
    """Run one image through ``model`` in eval mode and record every module call (see ``Trace``).

    ``record_ops`` also lists every torch call with the ids of its tensors, to follow the data flow
    (the ids stay unique while the returned trace is alive: it holds the tensors).
    """
    x = example_input(model, input_size)
    was_training = model.training
    model.eval()
    tracer = _Tracer(model, record_ops)
    tracer.trace.input_shape = tuple(x.shape)
    try:
        with torch.no_grad(), tracer:
            model(x)
    finally:
        tracer.close()
        model.train(was_training)
    if record_ops:
        tracer.trace.tensors = tracer.alive + [x]  # keep the ids valid for the caller
    return tracer.trace


def module_macs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> dict[str, int]:
    """MACs of one image through each module, by qualified name ("" is the whole model)."""
    return trace(model, input_size).module_macs()


def count_macs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> int:
    """Multiply-accumulates of conv and linear layers for one image of ``input_size`` (default: the model's)."""
    return trace(model, input_size).total.macs


def weight_depth(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> int:
    """Depth in weight layers: convs and linear layers on the longest path from input to logits.

    The papers' convention: ResNet-50 has 50 (projection shortcuts run beside
    the main path), GoogLeNet 22, VGG-16 16; a depthwise conv counts together
    with the pointwise conv that follows it (Xception's "36 conv layers").
    """
    return trace(model, input_size).total.depth


def flop_counter_macs(model: nn.Module, input_size: int | tuple[int, int, int] | None = None) -> dict[str, int]:
    """``module_macs`` as torch's FlopCounterMode counts it (2 FLOPs per MAC): the slow reference for tests."""
    from torch.utils.flop_counter import FlopCounterMode

    x = example_input(model, input_size)
    was_training = model.training
    model.eval()
    try:  # _MetaShortcuts only skips batch norm on meta, which FlopCounterMode does not count anyway
        with torch.no_grad(), FlopCounterMode(display=False) as counter, _MetaShortcuts():
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


def min_input_size(name: str, **kwargs) -> int:
    """The smallest square input the registered model ``name`` accepts (found on the meta device)."""

    def fits(size: int) -> bool:
        try:
            with torch.no_grad(), _MetaShortcuts():
                model(torch.zeros(1, cfg.in_chans, size, size, device="meta"))
            return True
        except (RuntimeError, ValueError):  # torch's shape errors; a family's own input-size check
            return False

    model = meta_model(name, **kwargs).eval()
    cfg = model.default_cfg  # the model as built: ``in_chans`` may be among the kwargs
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
        input_size = example_input(model).shape[1:]
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


def share(part: float, whole: float) -> float:
    """``part / whole``, 0 when the whole is 0 (a model without MACs)."""
    return part / whole if whole else 0.0

