"""Gradient-flow monitor: each residual block's mean |gradient| per epoch.

Huang et al. (stochastic depth, arXiv 1603.09382) show that dropping blocks
keeps the gradients reaching the early blocks larger than in a network of
constant depth. With ``grad_flow: true`` the training loop records, for every
residual block (a module with a stochastic-depth gate), the mean absolute
gradient over all its parameters, averaged over the steps of the epoch in
which the block ran (a dropped block has no gradient that step). The run
folder gets ``grad_flow.csv`` (one row per epoch, one column per block),
TensorBoard scalars ``grad_flow/<block>`` and ``grad_flow.png``;
``plot_grad_flow`` overlays several runs (with and without stochastic depth)
for the paper's comparison.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from torch import nn

from ..layers.drop import StochasticDepth
from .checkpoint import atomic_write
from .config import ConfigError


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module that owns a stochastic-depth gate, input to output: a ResNet block, a PolyInception module.

    The owner is the gate's nearest ancestor that is not a plain container (a ModuleList of per-path gates).
    """
    modules = dict(model.named_modules())
    blocks: dict[str, nn.Module] = {}
    for name, module in modules.items():
        if isinstance(module, StochasticDepth):
            owner = name.rpartition(".")[0]
            while isinstance(modules[owner], (nn.ModuleList, nn.ModuleDict, nn.Sequential)):
                owner = owner.rpartition(".")[0]
            blocks.setdefault(owner, modules[owner])
    return list(blocks.items())


class GradFlowMonitor:
    """Accumulates per-block mean |grad| after each backward; ``end_epoch`` returns the epoch's averages."""

    def __init__(self, model: nn.Module):
        self.blocks = [(name, [p for p in block.parameters() if p.requires_grad])
                       for name, block in residual_blocks(model)]
        if not self.blocks:
            raise ConfigError(f"grad_flow needs residual blocks (modules with a stochastic-depth gate);"
                              f" {type(model).__name__} has none")
        self.names = [name for name, _ in self.blocks]
        device = self.blocks[0][1][0].device
        self.sums = torch.zeros(len(self.blocks), dtype=torch.float64, device=device)
        self.counts = torch.zeros(len(self.blocks), dtype=torch.float64, device=device)

    @torch.no_grad()
    def after_backward(self) -> None:
        """Record this step's gradients (unscaled: call after GradScaler.unscale_)."""
        for i, (_, params) in enumerate(self.blocks):
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                self.sums[i] += sum(g.abs().sum(dtype=torch.float64) for g in grads) / sum(g.numel() for g in grads)
                self.counts[i] += 1

    def end_epoch(self) -> dict[str, float]:
        """Mean |grad| per block over the steps it ran this epoch (NaN if it never ran), then reset."""
        means = (self.sums / self.counts).tolist()  # 0/0 = NaN for a block dropped all epoch
        self.sums.zero_()
        self.counts.zero_()
        return dict(zip(self.names, means))

    def state_dict(self) -> dict:
        return {"sums": self.sums.cpu(), "counts": self.counts.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.sums.copy_(state["sums"])
        self.counts.copy_(state["counts"])


def write_grad_flow(folder: Path, rows: list[dict]) -> None:
    """grad_flow.csv (epoch, then one column per block) and grad_flow.png from one dict per epoch."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    atomic_write(folder / "grad_flow.csv", lambda f: f.write(buf.getvalue().encode()))
    plot_grad_flow([folder / "grad_flow.csv"], folder / "grad_flow.png")


def read_grad_flow(path: str | Path) -> tuple[list[int], list[str], list[list[float]]]:
    """grad_flow.csv as (epochs, block names, rows of mean |grad|)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    return [int(r[0]) for r in rows[1:]], names, [[float(v) for v in r[1:]] for r in rows[1:]]


def plot_grad_flow(csv_paths: list[str | Path], out: str | Path, labels: list[str] | None = None) -> None:
    """Left: the first block's mean |grad| against epoch (the paper's figure); right: every block at the last epoch.

    Give several runs' ``grad_flow.csv`` (e.g. with and without stochastic depth) to compare them.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.92, wspace=0.3)
    by_epoch, by_block = fig.subplots(1, 2)
    for i, path in enumerate(csv_paths):
        epochs, names, values = read_grad_flow(path)
        label = labels[i] if labels else Path(path).parent.name
        by_epoch.plot(epochs, [row[0] for row in values], marker="o", markersize=3, label=label)
        by_block.plot(range(1, len(names) + 1), values[-1], marker="o", markersize=3,
                      label=f"{label}, epoch {epochs[-1]}")
    by_epoch.set(xlabel="epoch", ylabel="mean |gradient|", title=f"first residual block ({names[0]})", yscale="log")
    by_block.set(xlabel="residual block (input to output)", ylabel="mean |gradient|", title="every block, last epoch",
                 yscale="log")
    for ax in (by_epoch, by_block):
        ax.grid(alpha=0.3)
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(out, lambda f: f.write(buf.getvalue()))
