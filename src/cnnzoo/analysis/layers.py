"""Per-layer table of a model (``cnnzoo info NAME --layers``): where its parameters and MACs sit.

One traced forward pass of one image (``complexity.trace``) gives every module
call in execution order. A row is a leaf module call (conv, BN, ReLU, pool,
linear ...), plus any container whose own forward runs counted ops or owns
parameters directly; a module called twice (a shared block) has a row per call,
its parameters on the first. Each MAC is on exactly one row, so the rows add up
to the model's total. Stage totals group the model's top-level modules (a
top-level container counting as its children: ``features.0``, ``features.1``
...) into runs whose outputs share a spatial resolution, the papers' "output
size" stages. Modules that eval mode never runs
(auxiliary heads) are listed apart, with their parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from torch import nn

from .complexity import count_params, share, trace
from .report import FORMATS, Column, integer, percent, render, shape


@dataclass
class Row:
    name: str  # qualified module name
    type: str  # module class
    output_shape: tuple | None  # with the batch dimension (1); None for modules eval mode does not run
    params: int
    macs: int
    macs_share: float  # of the model's MACs
    params_share: float  # of the model's parameters


@dataclass
class LayerTable:
    model: str
    input_size: tuple[int, ...]  # C x H x W
    layers: list[Row]  # in execution order
    stages: list[Row]
    not_run: list[Row]  # modules with parameters that an eval forward never calls
    total: Row


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _units(model: nn.Module) -> dict[str, nn.Module]:
    """The model's top-level modules, a top-level container counting as its children."""
    units = {}
    for name, child in model.named_children():
        if isinstance(child, _CONTAINERS) and next(child.children(), None) is not None:
            units.update((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            units[name] = child
    return units


def _resolution(out: tuple | None) -> tuple:
    """Spatial size of an output; () for pooled features and logits (1x1 counts as pooled)."""
    spatial = tuple(out[2:]) if out is not None else ()
    return () if all(d == 1 for d in spatial) else spatial


def _stage_name(members: list[str], model: nn.Module) -> str:
    """``first .. last``, a run that covers a whole container named by the container."""
    parts = []
    for name in members:
        parent = name.rpartition(".")[0]
        if parent and parts and parts[-1][0] == parent:
            parts[-1][1].append(name)
        else:
            parts.append((parent, [name]))
    names = []
    for parent, run in parts:
        whole = parent and len(run) == len(list(model.get_submodule(parent).children()))
        names += [parent] if whole else run
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def layer_table(model: nn.Module, input_size: int | tuple[int, int, int] | None = None, name: str = "") -> LayerTable:
    """The per-layer table of ``model`` for one image of ``input_size`` (default: the model's own)."""
    tr = trace(model, input_size)
    total_macs, total_params = tr.total.macs, count_params(model)

    def row(name: str, module: nn.Module, out: tuple | None, params: int, macs: int) -> Row:
        return Row(name or "(model)", type(module).__name__, out, params, macs,
                   share(macs, total_macs), share(params, total_params))

    layers, seen = [], set()
    for call in tr.calls:
        own = _own_params(call.module) if id(call.module) not in seen else 0
        seen.add(id(call.module))
        is_leaf = next(call.module.children(), None) is None
        if is_leaf or call.self_macs or own:
            layers.append(row(call.name, call.module, call.output_shape, own, call.self_macs))

    # Stages: runs of consecutive top-level modules whose outputs share a resolution (the papers' "output size").
    units = _units(model)
    groups: list[list] = []
    for call in tr.calls:
        if call.name in units:
            if groups and _resolution(groups[-1][-1].output_shape) == _resolution(call.output_shape):
                groups[-1].append(call)
            else:
                groups.append([call])
    stages = []
    for group in groups:
        members = list(dict.fromkeys(c.name for c in group))
        params = sum(count_params(units[n]) for n in members)
        stages.append(row(_stage_name(members, model), group[-1].module, group[-1].output_shape, params,
                          sum(c.macs for c in group)))
    root = tr.calls[-1]
    if root.self_macs or _own_params(model):
        stages.append(row("", model, None, _own_params(model), root.self_macs))

    used = {""} | {c.name.rsplit(".", i)[0] for c in tr.calls for i in range(c.name.count(".") + 1)}
    not_run = [
        row(n, m, None, count_params(m), 0)
        for n, m in model.named_modules()
        if n not in used and n.rpartition(".")[0] in used and count_params(m)
    ]
    total = Row("total", type(model).__name__, root.output_shape, total_params, total_macs, 1.0, 1.0)
    return LayerTable(name or type(model).__name__, tr.input_shape[1:], layers, stages, not_run, total)


_LAYER_COLUMNS = [
    Column("name", "layer", left=True),
    Column("type", "type", left=True),
    Column("output_shape", "output", shape),
    Column("params", "params", integer),
    Column("macs", "MACs", integer),
    Column("macs_share", "MACs %", percent),
]
_STAGE_COLUMNS = [
    Column("name", "stage", left=True),
    Column("output_shape", "output", shape),
    Column("params", "params", integer),
    Column("params_share", "params %", percent),
    Column("macs", "MACs", integer),
    Column("macs_share", "MACs %", percent),
]


def format_layer_table(table: LayerTable, fmt: str = "text") -> str:
    """The table as ``text`` (aligned), ``markdown`` (two tables), ``csv`` (one, with a ``level`` column) or ``json``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    groups = {"layer": table.layers, "stage": table.stages, "not run in eval": table.not_run, "total": [table.total]}
    if fmt == "json":
        return json.dumps({
            "model": table.model, "input_size": list(table.input_size),
            **{key: [asdict(r) for r in rows] for key, rows in
               (("layers", table.layers), ("stages", table.stages), ("not_run", table.not_run))},
            "total": asdict(table.total),
        }, indent=1)
    if fmt == "csv":
        rows = [dict(asdict(r), level=level, output_shape=shape(r.output_shape))
                for level, rs in groups.items() for r in rs]
        return render([Column("level", "level"), *_LAYER_COLUMNS[:-1], Column("macs_share", ""),
                       Column("params_share", "")], rows, "csv")
    size = "x".join(map(str, table.input_size))
    head = (f"{table.model} at {size}: {table.total.params:,} params, {table.total.macs:,} MACs"
            f" ({table.total.macs / 1e9:.3f} G)")
    layers = [asdict(r) for r in table.layers]
    stages = [asdict(r) for r in table.stages + [table.total]]
    parts = [head, render(_LAYER_COLUMNS, layers, fmt), "Stage totals:", render(_STAGE_COLUMNS, stages, fmt)]
    if table.not_run:
        parts += ["Not run in eval mode (e.g. auxiliary heads, used in training only):",
                  render(_STAGE_COLUMNS, [asdict(r) for r in table.not_run], fmt)]
    return "\n\n".join(parts)
