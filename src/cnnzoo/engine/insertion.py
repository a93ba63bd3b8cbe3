"""Initialization by insertion (PolyNet, Zhang et al. 2017, arXiv 1611.05725, Section 5): a training procedure.

Very Deep PolyNet is not trained from scratch: the paper starts it from a
trained shallower PolyNet, inserting new modules between the trained ones.
"""

from __future__ import annotations

import torch

from ..models.polynet import PerOrder, PolyInception, PolyNet


def insert_init(shallow: PolyNet, deep: PolyNet) -> PolyNet:
    """Initialization by insertion: start ``deep`` from a trained ``shallow`` PolyNet.

    The stem, reductions and head are copied. In each stage, shallow's modules
    keep their order and are spread over deep's (module i goes to the first
    free position of its kind at or after i * deep_depth / shallow_depth); each
    keeps its trained weights, its beta and its paths' gates (survival p_l,
    inverted or not): at a new position, deep's schedule would give it another
    p_l, and so another scale at evaluation. Every other module of deep is
    inserted: the final BN of each of its blocks gets gamma = beta = 0, so each
    path adds exactly 0 whatever its gate draws, in training (BN on batch
    statistics) and evaluation alike, and the module is the identity (its input
    is a ReLU output already). So ``deep`` computes what ``shallow`` computed, up
    to float rounding, in evaluation, and in training it is the same random
    function (the same gates with the same probabilities), so equal in
    expectation too. Returns ``deep``.
    """
    for name in ("stem", "reduction_a", "reduction_b", "fc"):
        getattr(deep, name).load_state_dict(getattr(shallow, name).state_dict())
    for name in ("stage_a", "stage_b", "stage_c"):
        src, dst = getattr(shallow, name), getattr(deep, name)
        if len(src) > len(dst):
            raise ValueError(f"{name}: the shallow net has {len(src)} modules, more than the deep one's {len(dst)}")
        placed, j = set(), 0
        for i, module in enumerate(src):
            j = max(j, i * len(dst) // len(src))
            while j < len(dst) and dst[j].kind != module.kind:
                j += 1
            if j == len(dst):
                raise ValueError(f"{name}.{i}: no free {module.kind} module left in the deep net to place it in;"
                                 " give the deep net at least as many modules of each kind, in the same order")
            dst[j].load_state_dict(module.state_dict())
            dst[j].beta = module.beta
            for mine, theirs in zip(dst[j].drop_paths, module.drop_paths):
                mine.survival_prob, mine.inverted = theirs.survival_prob, theirs.inverted
            placed.add(j)
            j += 1
        for k, module in enumerate(dst):
            if k not in placed:
                start_as_identity(module)
    return deep


def start_as_identity(module: PolyInception) -> None:
    """Zero the final BN (gamma and beta, every order's) of each block F: every path then adds 0."""
    with torch.no_grad():
        for block in module.blocks:
            for final in (block.conv2d if isinstance(block.conv2d, PerOrder) else [block.conv2d]):
                for bn in final.bn:
                    bn.weight.zero_()
                    bn.bias.zero_()


