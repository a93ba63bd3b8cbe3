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

    python benchmarks/stochastic_depth.py            # 30 steps per case, batch 128, 32x32
"""

from __future__ import annotations

import argparse
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cnnzoo in {layout}")

    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    ours = resnet110_cases()
    gates = [m.survival_prob for m in ours[BATCH_MODE].modules()
             if isinstance(m, cnnzoo.layers.StochasticDepth)]
    print(f"ResNet-110: L = {len(gates)} blocks, E[L~] = {sum(gates):.2f} ({sum(gates) / len(gates):.3f} of L)")
    times = measure({name: train_step(m, x, y, layout) for name, m in ours.items()}, args.steps)
    report(f"cnnzoo CIFAR ResNet-110, batch {args.batch_size}, 32x32, {args.steps} steps each",
           times, BASELINE)

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
