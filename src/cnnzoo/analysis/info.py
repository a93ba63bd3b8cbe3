"""What `cnnzoo list` and `cnnzoo info` print: one model's measured figures against its paper's, as text lines."""

from __future__ import annotations

from typing import Iterator

from torch import nn

from .. import registry
from .complexity import check_input_size, compare_models, count_macs, count_params, meta_model, trace
from .report import macs_text, reference_macs_text


def _mark(measured: float, reference: float | None, decimals: int = 0) -> str:
    if reference is None:
        return ""
    ok = round(measured, decimals) == round(reference, decimals)
    return "✓ match" if ok else "✗ MISMATCH"


def _decimals(x: float) -> int:
    return len(repr(x).partition(".")[2])


def list_lines(pattern: str = "*") -> Iterator[str]:
    """A header, then one line per model matching ``pattern``: name, params, GMACs, input side."""
    names = registry.list_models(pattern)
    if not names:
        raise ValueError(f"no model matches {pattern!r}; `cnnzoo list` shows them all")
    yield f"{'model':<28} {'params':>14} {'MACs':>9}  input"
    for name in names:
        model = meta_model(name)
        yield f"{name:<28} {count_params(model):>14,} {macs_text(count_macs(model)):>9}  {model.default_cfg.img_size}"


def pretrained_lines(pattern: str = "*") -> Iterator[str]:
    """A header, then one line per published weight set matching ``pattern``: source, licence, input, accuracy."""
    from ..hub import get_pretrained_cfg, list_pretrained

    tagged = [get_pretrained_cfg(n) for n in list_pretrained(pattern)
              if n.partition(".")[0] in registry.list_models()]
    if not tagged:
        raise ValueError(f"no published weights match {pattern!r}; `cnnzoo list --pretrained` shows them all")
    yield f"{'weights':<42} {'source':<17} {'licence':<13} {'input':>5} {'top-1 / top-5':>15}"
    for cfg in tagged:
        accuracy = "" if cfg.top1 is None else f"{cfg.top1:.2f} / {cfg.top5:.2f}"
        yield f"{cfg.name:<42} {cfg.source:<17} {cfg.license:<13} {cfg.input_size[-1]:>5} {accuracy:>15}"


def weights_lines(name: str) -> list[str]:
    """The published weights of ``name``: tag, source, licence, preprocessing and accuracy."""
    from ..hub import get_pretrained_cfg, pretrained_tags

    lines = []
    for i, tag in enumerate(pretrained_tags(name)):
        cfg = get_pretrained_cfg(name, tag)
        accuracy = f"top-1 {cfg.top1}%, top-5 {cfg.top5}%" if cfg.top1 is not None else "no published accuracy"
        label = "weights" if i == 0 else ""
        lines.append(f"  {label:<13}{cfg.name}{' (default)' if i == 0 else ''}: {cfg.source}, {cfg.license};"
                     f" {accuracy} at {cfg.input_size[-1]} (crop {cfg.crop_pct}, {cfg.interpolation})")
    return lines


def info_lines(name: str, input_size: int | None = None, drop_path_rate: float = 0.0,
               compare: str | None = None) -> list[str]:
    """``name``'s params, MACs and depth against its paper's figures; its stochastic-depth savings at
    ``drop_path_rate``; with ``compare``, both models per shared module and what ``name`` saves."""
    model = meta_model(name, **({"drop_path_rate": drop_path_rate} if drop_path_rate else {}))
    cfg = model.default_cfg
    size = cfg.img_size if input_size is None else input_size
    check_input_size(name, size)
    if compare:  # check it before measuring anything
        other = meta_model(compare)
        check_input_size(compare, size)
    params = count_params(model)
    tr = trace(model, size)
    macs = tr.module_macs()
    at_ref_size = size == cfg.img_size

    lines = [f"{name}: {cfg.paper}" + (f" (arXiv {cfg.arxiv})" if cfg.arxiv else ""),
             f"  {'input':<13}{cfg.in_chans} x {size} x {size}" + ("" if at_ref_size else f"  (paper: {cfg.img_size})")]
    ref_params = f"reference {cfg.params:,}" if cfg.params else "no reference"
    lines.append(f"  {'params':<13}{params:<16,}{ref_params:<24}{_mark(params, cfg.params)}")
    if cfg.paper_params is not None:  # the paper's rounded figure, beside the exact count
        d, mparams = _decimals(cfg.paper_params), params / 1e6
        lines.append(f"  {'':<13}{f'{mparams:.{d}f} M':<16}{f'paper {cfg.paper_params} M':<24}"
                     f"{_mark(mparams, cfg.paper_params, d)}")
    gmacs = macs[""] / 1e9
    if cfg.macs and at_ref_size:
        d = _decimals(cfg.macs)
        ref = f"reference {reference_macs_text(cfg.macs)}"
        lines.append(f"  {'MACs':<13}{macs_text(macs[''], d):<16}{ref:<24}{_mark(gmacs, cfg.macs, d)}")
    else:
        note = f"reference {reference_macs_text(cfg.macs)} is at {cfg.img_size}" if cfg.macs else "no reference"
        lines.append(f"  {'MACs':<13}{macs_text(macs['']):<16}{note}")
    lines.append(f"  {'depth':<13}{tr.total.depth} weight layers on the longest path")
    for label, err in (("top-1 error", cfg.top1_err), ("top-5 error", cfg.top5_err)):
        if err is not None:
            lines.append(f"  {label:<13}{'':<16}reference {err}%" + (f"  ({cfg.eval_note})" if cfg.eval_note else ""))
    lines += weights_lines(name)
    if drop_path_rate:
        lines += _stochastic_depth_lines(name, model, macs, drop_path_rate)
    if compare:
        lines += comparison_lines(name, model, compare, other, size)
    return lines


def _stochastic_depth_lines(name: str, model: nn.Module, macs: dict[str, int], rate: float) -> list[str]:
    """Expected active blocks E[L~] and, in batch mode, the expected training MACs per image."""
    from .stochastic_depth import drop_path_cost

    cost = drop_path_cost(model, macs)
    if cost is None:
        raise ValueError(f"{name} has no residual blocks to drop; --drop-path-rate applies to residual families")
    lines = [f"  {'stoch. depth':<13}{cost.gates} {'paths' if cost.paths else 'blocks'}, expected active E[L~] ="
             f" {cost.expected_active:.2f} (p_L = {1 - rate:g}, {cost.mode} mode)"]
    if cost.mode == "batch":
        lines.append(f"  {'train MACs':<13}{(macs[''] - cost.saved_macs) / 1e9:.3f} G expected per image,"
                     f" {1 - cost.saved_macs / macs['']:.1%} of the full network's {macs[''] / 1e9:.3f} G")
    return lines


def comparison_lines(name: str, model: nn.Module, other_name: str, other: nn.Module, size: int) -> list[str]:
    """Both models' params and MACs, per shared top-level module, and what ``name`` saves against ``other_name``."""
    rows = compare_models(model, other, size)
    w = max(len(name), len(other_name), 11) + 2
    lines = [f"\n{name} against {other_name} at {size} x {size} (params, then GMACs):",
             f"  {'module':<14}{name:>{w}}{other_name:>{w}}  {name:>{w}}{other_name:>{w}}"]
    for module, (params, other_params, macs, other_macs) in rows.items():
        lines.append(f"  {module or 'total':<14}{params:>{w},}{other_params:>{w},}  {macs / 1e9:>{w}.3f}"
                     f"{other_macs / 1e9:>{w}.3f}")
    params, other_params, macs, other_macs = rows[""]
    for what, ours, theirs, show in (("params", params, other_params, "{:,}".format),
                                     ("MACs", macs, other_macs, lambda n: f"{n / 1e9:.3f} G")):
        diff = theirs - ours
        amount = show(abs(diff))
        share = f"({abs(diff) / theirs:.1%} of {other_name}'s)" if theirs else ""
        if diff == 0:
            lines.append(f"  {name} and {other_name} have the same {what}")
        else:
            lines.append(f"  {name} {'saves' if diff > 0 else 'costs'} {amount}{'' if diff > 0 else ' more'}"
                         f" {what} {share}")
    return lines
