"""PolyNet's cascades and stochastic paths, measured on the CPU.

1. A poly-3 module evaluates F three times, not six: F(x), F(F(x)) and F(F(F(x))) reuse each other's
   results. Counted (calls of F, MACs) and timed (training step of the module) against one F evaluation,
   with a naive version that computes each power from scratch (1 + 2 + 3 = 6 evaluations) as contrast.
2. A dropped stochastic path is not computed: training-step time of a poly-3 and a 2-way module with their
   gates forced, and of whole networks (``--nets``: polynet_363_b_poly3 and PolyNet's baseline
   inception_resnet_v2) with drop_path_rate=0.5 ("batch" mode) against the same network without stochastic
   paths and in "row" mode (which masks and saves nothing), beside the MACs the gates are expected to save.

Every time is the median over ``--reps`` runs, the configurations of one table alternated side by side in
one process, and reported as a ratio to that table's baseline.

    PYTHONPATH=src python benchmarks/polynet_paths.py [--threads 2] [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis.complexity import module_macs
from cnnzoo.analysis.stochastic_depth import expected_saved_macs
from cnnzoo.layers import seed_gates
from cnnzoo.models.polynet import PolyInception


def train_step(model: torch.nn.Module, run: Callable[[], torch.Tensor]) -> float:
    """Seconds for one forward + backward (gradients cleared first)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    run().sum().backward()
    return time.perf_counter() - start


def alternate(configs: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
    """Median seconds of each configuration, run in turn ``reps`` times after one warm-up round."""
    times = {name: [] for name in configs}
    for rep in range(reps + 1):
        for name, fn in configs.items():
            t = fn()
            if rep:
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def macs_of(fn: Callable[[], torch.Tensor]) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def force_gates(module: PolyInception, keep: tuple[bool, ...] | None) -> None:
    """Fix which paths run (None: every path, the eval-time behaviour of the gates)."""
    for k, gate in enumerate(module.drop_paths):
        gate.open = (lambda kept=keep[k]: kept) if keep else (lambda: True)


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def poly3_costs(reps: int, batch: int) -> None:
    torch.manual_seed(0)
    poly3 = PolyInception("poly-3", "B").train()
    block = poly3.blocks[0]  # the Block17 whose transform is F
    f = block.transform
    x = F.relu(torch.randn(batch, 1152, 17, 17))  # stage B at 299 x 299

    calls = []  # F evaluations, counted at F's final 1x1 (every evaluation ends there)
    hook = block.conv2d.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        poly3(x)
    hook.remove()

    def naive() -> torch.Tensor:  # every power from scratch: F, F(F), F(F(F)): 6 evaluations
        f1 = f(x)
        f2 = f(F.relu(f(x)))
        f3 = f(F.relu(f(F.relu(f(x)))))
        return F.relu(x + 0.3 * (f1 + f2 + f3))

    one_f = macs_of(lambda: f(x))
    times = alternate({
        "F": lambda: train_step(block, lambda: f(x)),
        "poly-3": lambda: train_step(poly3, lambda: poly3(x)),
        "naive": lambda: train_step(poly3, naive),
    }, reps)
    table(f"poly-3 module (stage B, batch {batch} x 1152 x 17 x 17), training step (forward + backward)", [
        ("one F evaluation", "1", "1.00", "1.00"),
        ("poly-3 (cascade)", str(len(calls)), f"{macs_of(lambda: poly3(x)) / one_f:.2f}",
         f"{times['poly-3'] / times['F']:.2f}"),
        ("naive, each power recomputed", "6", f"{macs_of(naive) / one_f:.2f}", f"{times['naive'] / times['F']:.2f}"),
    ], ("computation", "F calls", "MACs / F", "step time / F"))


def dropped_paths(reps: int, batch: int) -> None:
    torch.manual_seed(0)
    # The input needs a gradient, as inside a network: with every path dropped the step is the identity's.
    x = F.relu(torch.randn(batch, 1152, 17, 17)).requires_grad_()
    rows = []
    for kind, patterns in (("poly-3", [(True, True, True), (True, True, False), (False, True, False),
                                       (True, False, False), (False, False, False)]),
                           ("2-way", [(True, True), (True, False), (False, False)])):
        module = PolyInception(kind, "B").train()

        def run(keep, module=module):
            force_gates(module, keep)
            return train_step(module, lambda: module(x))

        times = alternate({keep: (lambda keep=keep: run(keep)) for keep in patterns}, reps)
        for keep in patterns:
            force_gates(module, keep)
            macs = macs_of(lambda: module(x))
            force_gates(module, None)
            full = macs_of(lambda: module(x))
            label = " ".join(f"{'kept' if k else 'dropped'}" for k in keep)
            rows.append((kind, label, f"{macs / full:.2f}", f"{times[keep] / times[patterns[0]]:.2f}"))
    table(f"Forced gates (stage B modules, batch {batch}), training step relative to every path kept", rows,
          ("module", "paths 1..n", "MACs ratio", "step-time ratio"))


def network(name: str, reps: int, batch: int, size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    models = {
        "no stochastic paths": cnnzoo.create_model(name),
        "drop_path_rate=0.5, batch": cnnzoo.create_model(name, drop_path_rate=0.5),
        "drop_path_rate=0.5, row": cnnzoo.create_model(name, drop_path_rate=0.5, drop_path_mode="row"),
    }
    for model in models.values():
        model.train()
    steps = {label: 0 for label in models}

    def run(label: str) -> float:
        steps[label] += 1
        seed_gates(models[label], steps[label])  # the same gate draws for each configuration's n-th step
        model = models[label]
        return train_step(model, lambda: model(x))

    times = alternate({label: (lambda label=label: run(label)) for label in models}, reps)
    macs = module_macs(models["drop_path_rate=0.5, batch"], size)
    saved = expected_saved_macs(models["drop_path_rate=0.5, batch"], macs)
    base = times["no stochastic paths"]
    table(f"{name}, training step (batch {batch}, {size} x {size}), real gates, p_L = 0.5 linear", [
        (label, f"{times[label] / base:.2f}",
         f"{(macs[''] - saved) / macs[''] if label.endswith('batch') else 1:.2f}") for label in models
    ], ("configuration", "step-time ratio", "expected MACs ratio"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8, help="batch of the module benchmarks")
    parser.add_argument("--net-batch", type=int, default=4)
    parser.add_argument("--net-size", type=int, default=149)
    parser.add_argument("--nets", default="polynet_363_b_poly3,inception_resnet_v2",
                        help="comma-separated networks for the whole-network table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps} alternated runs")
    poly3_costs(args.reps, args.batch)
    dropped_paths(args.reps, args.batch)
    for name in filter(None, args.nets.split(",")):
        network(name, args.reps, args.net_batch, args.net_size)


if __name__ == "__main__":
    main()
