"""What stochastic depth saves: the expected training MACs of a network with "batch"-mode gates.

A single-block gate (``StochasticDepth`` around a residual branch) skips its
branch with probability 1 - p_l, so it saves (1 - p_l) x the branch's MACs. A
multi-path module (PolyNet's ``PolyInception``) gates each path: a parallel
path runs with its own p_k, a cascade's order k runs when it or any later order
is kept (a later order needs it). Both are computed from an eval-mode
``module_macs`` of the same model, where every branch and path runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..layers import StochasticDepth
from ..models.polynet import PolyInception


@dataclass
class DropPathCost:
    gates: int  # gated blocks, or paths in multi-path modules
    expected_active: float  # E[L~]: the sum of the survival probabilities
    saved_macs: float  # MACs a training pass skips on average (batch mode)
    paths: bool  # the gates are a multi-path module's paths (PolyNet), not whole blocks
    mode: str  # "batch" or "row" (row mode computes every branch: it saves nothing)


def _outermost_calls(macs: dict[str, int], prefix: str) -> int:
    """MACs under ``prefix`` (a module run through a method, not called): its outermost module calls' sum."""
    return sum(v for k, v in macs.items() if k.startswith(prefix) and k.rpartition(".")[0] not in macs)


def poly_saved_macs(module: PolyInception, macs: dict[str, int], name: str) -> float:
    """MACs a "batch"-mode training pass of ``module`` skips on average (``name``: its name in ``macs``)."""
    p = [gate.survival_prob for gate in module.drop_paths]
    runs = [1 - math.prod(1 - q for q in p[k:]) for k in range(len(p))] if module.cascade else p
    prefix = f"{name}." if name else ""
    evals = [_outermost_calls(macs, f"{prefix}blocks.{b}.") for b in range(len(module.blocks))]
    # poly-N: F is evaluated once per order, each time at the same shapes
    per_path = [evals[0] / len(p)] * len(p) if len(module.blocks) == 1 else evals
    return sum((1 - r) * m for r, m in zip(runs, per_path))


def expected_saved_macs(model: nn.Module, macs: dict[str, int]) -> float:
    """MACs a "batch"-mode training pass of ``model`` skips on average, from its eval-mode ``module_macs``."""
    # A single-block gate is called with its branch: the branch's MACs are the gate's own.
    saved = sum((1 - m.survival_prob) * macs.get(n, 0) for n, m in model.named_modules() if isinstance(m, StochasticDepth))
    return saved + sum(poly_saved_macs(m, macs, n) for n, m in model.named_modules() if isinstance(m, PolyInception))


def drop_path_cost(model: nn.Module, macs: dict[str, int]) -> DropPathCost | None:
    """The gates of ``model`` and what they save (None: it has no gate below survival 1)."""
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    if not any(g.survival_prob < 1 for g in gates):
        return None
    return DropPathCost(len(gates), sum(g.survival_prob for g in gates), expected_saved_macs(model, macs),
                        any(isinstance(m, PolyInception) for m in model.modules()), gates[0].mode)
