"""Does stochastic depth make training shorter? Training-step time with and without it, side by side.

Huang et al. (arXiv 1603.09382) report ~25% less training time for ResNet-110 with
p_L = 0.5, because a dropped block is never computed. This measures cnnzoo's
"batch" mode (one gate per block per step, closed gates skip the branch) and
"row" mode (per-sample mask, always computes) against the same network without
stochastic depth, and timm's DropPath on timm's ResNet-50 as the peer.

Each step is forward + backward + SGD update on random data; the cases are run
in turn (alternating, so machine noise hits all alike) after a warm-up. The
ratio that matters for training time is the ratio of mean step times (the gates
differ from step to step); the median is shown too. cnnzoo's models train in
the memory format its trainer uses (``TrainConfig.channels_last``: NHWC), timm's
in its default (NCHW); ``--nchw`` puts cnnzoo's in NCHW too.

What "batch" mode can save depends on what each block costs, not only on how
often it is dropped: the three stages do equal MACs per block, but the
16-channel blocks of stage 1 (kept most often) run slower than the 64-channel
blocks of stage 3 (dropped most), by a factor that depends on the CPU. So the
benchmark also measures each stage's block cost, with every gate of the
network forced shut or open (``forced``), and prints the expected ratio
(fixed cost + sum over blocks of p_l x its stage's block cost) / (all blocks
kept): the best the gates can do on this machine, which the measured ratio
should track.

    python benchmarks/stochastic_depth.py            # 30 steps per case, batch 128, 32x32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

import cnnzoo
from peers import TRAINER_LAYOUT


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               layout: torch.memory_format = torch.contiguous_format):
    model, x = model.to(memory_format=layout), x.contiguous(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - start

    return step


def measure(cases: dict, steps: int, warmup: int = 2) -> dict[str, list[float]]:
    for step in cases.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in cases}
    for _ in range(steps):
        for name, step in cases.items():
            times[name].append(step())
    return times


BASELINE, BATCH_MODE = "resnet110 (no stochastic depth)", "resnet110 drop_path_rate=0.5 batch"


def resnet110_cases() -> dict[str, torch.nn.Module]:
    """CIFAR ResNet-110 without stochastic depth (the baseline, first), with p_L = 0.5 in batch and in row mode."""
    return {
        BASELINE: cnnzoo.create_model("resnet110"),
        BATCH_MODE: cnnzoo.create_model("resnet110", drop_path_rate=0.5),
        "resnet110 drop_path_rate=0.5 row": cnnzoo.create_model("resnet110", drop_path_rate=0.5, drop_path_mode="row"),
    }


def gates_of(model: torch.nn.Module) -> dict[str, cnnzoo.layers.StochasticDepth]:
    """Each residual block's gate, by the block's name."""
    return {name.removesuffix(".drop_path"): g for name, g in model.named_modules()
            if isinstance(g, cnnzoo.layers.StochasticDepth)}


@contextlib.contextmanager
def forced(model: torch.nn.Module, open_blocks: set[str]):
    """Every gate of ``model`` shut, except those of the blocks named in ``open_blocks``, which always open.

    A survival probability of 1 opens a gate, one of 0 shuts it (``StochasticDepth.open``); restored on exit.
    """
    gates = gates_of(model)
    saved = {name: g.survival_prob for name, g in gates.items()}
    for name, g in gates.items():
        g.survival_prob = 1.0 if name in open_blocks else 0.0
    try:
        yield
    finally:
        for name, g in gates.items():
            g.survival_prob = saved[name]


def expected_ratio(model: torch.nn.Module, step, baseline_step, rounds: int = 5) -> tuple[float, dict[str, float]]:
    """The ratio "batch" mode would reach if it saved exactly the dropped blocks' work, from measured costs.

    Steps with every gate shut give the fixed cost (stem, head, loss, update); steps with one stage's gates
    open give that stage's per-block cost. ``step`` and ``baseline_step`` run one training step each. Returns
    the ratio against ``baseline_step`` (the network without stochastic depth) and each stage's per-block cost
    in ms.
    """
    gates = gates_of(model)
    stages = {}
    for name in gates:
        stages.setdefault(name.split(".")[0], set()).add(name)
    cases = {"baseline": (None, baseline_step), "shut": (set(), step)}
    cases.update({stage: (names, step) for stage, names in stages.items()})

    def run(case) -> float:  # the seconds of one step, however ``fn`` reports (or not) its own
        names, fn = cases[case]
        with forced(model, names) if names is not None else contextlib.nullcontext():
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

    times = measure({case: (lambda case=case: run(case)) for case in cases}, rounds)
    med = {case: statistics.median(t) for case, t in times.items()}
    cost = {stage: (med[stage] - med["shut"]) / len(names) for stage, names in stages.items()}
    kept = sum(g.survival_prob * cost[name.split(".")[0]] for name, g in gates.items())
    return (med["shut"] + kept) / med["baseline"], {stage: c * 1e3 for stage, c in cost.items()}


def mean_ratio(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Mean step time of ``name`` over the baseline's: the ratio of training times (gates vary step to step)."""
    return statistics.mean(times[name]) / statistics.mean(times[baseline])


def report(title: str, times: dict[str, list[float]], baseline: str) -> None:
    base_median = statistics.median(times[baseline])
    print(f"\n{title}")
    print(f"| case | mean step ms | median step ms | mean ratio | median ratio |")
    print(f"|---|--:|--:|--:|--:|")
    for name, t in times.items():
        mean, median = statistics.mean(t), statistics.median(t)
        print(f"| {name} | {mean * 1e3:.1f} | {median * 1e3:.1f} | {mean_ratio(times, name, baseline):.3f} | "
              f"{median / base_median:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--peer-steps", type=int, default=15)
    parser.add_argument("--no-peer", action="store_true", help="skip timm's ResNet-50")
    parser.add_argument("--nchw", action="store_true", help="cnnzoo's models in NCHW instead of the trainer's NHWC")
    args = parser.parse_args()
    torch.manual_seed(0)
    layout = torch.contiguous_format if args.nchw else TRAINER_LAYOUT
    # the vector ISA torch's CPU kernels use: the stages' relative block costs, so the ratio, differ between them
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()} kernels, "
          f"{torch.get_num_threads()} threads, cnnzoo in {layout}")

    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    ours = resnet110_cases()
    gates = [g.survival_prob for g in gates_of(ours[BATCH_MODE]).values()]
    print(f"ResNet-110: L = {len(gates)} blocks, E[L~] = {sum(gates):.2f} ({sum(gates) / len(gates):.3f} of L)")
    steps = {name: train_step(m, x, y, layout) for name, m in ours.items()}
    times = measure(steps, args.steps)
    report(f"cnnzoo CIFAR ResNet-110, batch {args.batch_size}, 32x32, {args.steps} steps each",
           times, BASELINE)
    expected, cost = expected_ratio(ours[BATCH_MODE], steps[BATCH_MODE], steps[BASELINE])
    measured = mean_ratio(times, BATCH_MODE, BASELINE)
    print(f"\nper-block cost by stage (gates forced, median of 5): "
          + ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in cost.items()))
    print(f"expected ratio from these costs: {expected:.3f} (equal costs would give about "
          f"{sum(gates) / len(gates):.3f}); measured {measured:.3f}, {measured / expected - 1:+.1%} off")

    if not args.no_peer:
        import timm

        x, y = torch.randn(16, 3, 128, 128), torch.randint(0, 1000, (16,))
        peers = {f"timm resnet50 drop_path_rate={r}": timm.create_model("resnet50", drop_path_rate=r) for r in (0.0, 0.5)}
        peers["cnnzoo resnet50 drop_path_rate=0.5 batch"] = cnnzoo.create_model("resnet50", drop_path_rate=0.5)
        times = measure({name: train_step(m, x, y, layout if name.startswith("cnnzoo") else torch.contiguous_format)
                         for name, m in peers.items()}, args.peer_steps)
        report(f"peer: ResNet-50, batch 16, 128x128, {args.peer_steps} steps each", times,
               "timm resnet50 drop_path_rate=0.0")


if __name__ == "__main__":
    main()
