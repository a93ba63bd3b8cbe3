"""Why stochastic depth saves less time than work on a CPU: what a CIFAR ResNet block costs in each stage.

The three stages of a CIFAR ResNet do equal MACs per block (16 channels at 32x32, 32 at 16x16, 64 at 8x8),
but not equal time; stochastic depth keeps stage 1 most often and drops stage 3 most, so the time it saves
follows the blocks' costs (``benchmarks/stochastic_depth.py``). This times one block (two 3x3 convolutions,
two BNs, the ReLUs and the residual sum; forward + backward, batch 128) in stage 1 and stage 3, in NHWC and
NCHW, with oneDNN off, and compiled by ``torch.compile``; then each op alone; then counts the page faults of a
ResNet-110 training step (compare a run under ``GLIBC_TUNABLES``, which keeps freed memory in the process).

    PYTHONPATH=src python benchmarks/block_costs.py
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184 \\
        PYTHONPATH=src python benchmarks/block_costs.py --faults-only
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo

STAGES = {"stage 1": (16, 32), "stage 3": (64, 8)}  # channels, side
NHWC, NCHW = torch.channels_last, torch.contiguous_format


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


def median_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def fwd_bwd(module, x, g):
    return lambda: torch.autograd.grad(module(x), [x, *module.parameters()], g)


def blocks(reps: int) -> None:
    print("| one block, forward + backward, batch 128 | stage 1 ms | stage 3 ms | stage 1 / stage 3 |\n|---|--:|--:|--:|")
    cases = {"NHWC": (NHWC, True, False), "NCHW": (NCHW, True, False), "NHWC, oneDNN off": (NHWC, False, False),
             "NHWC, torch.compile": (NHWC, True, True)}
    for label, (layout, onednn, compiled) in cases.items():
        ms = []
        for c, side in STAGES.values():
            block = Block(c).to(memory_format=layout)
            run = torch.compile(block) if compiled else block
            x = torch.randn(128, c, side, side).contiguous(memory_format=layout).requires_grad_()
            with torch.backends.mkldnn.flags(enabled=onednn):
                ms.append(median_ms(fwd_bwd(run, x, torch.randn_like(x)), reps))
        print(f"| {label} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[0] / ms[1]:.2f} |")


def ops(reps: int) -> None:
    print("\n| one op, forward + backward, NHWC | stage 1 ms | stage 3 ms | stage 1 / stage 3 |\n|---|--:|--:|--:|")
    made = {"3x3 convolution": lambda c: nn.Conv2d(c, c, 3, padding=1, bias=False).to(memory_format=NHWC),
            "batch norm": lambda c: nn.BatchNorm2d(c), "ReLU": lambda c: nn.ReLU()}
    for label, make in made.items():
        ms = []
        for c, side in STAGES.values():
            x = torch.randn(128, c, side, side).contiguous(memory_format=NHWC).requires_grad_()
            ms.append(median_ms(fwd_bwd(make(c), x, torch.randn_like(x)), reps))
        print(f"| {label} | {ms[0]:.2f} | {ms[1]:.2f} | {ms[0] / ms[1]:.2f} |")


def faults(steps: int) -> None:
    model = cnnzoo.create_model("resnet110").to(memory_format=NHWC).train()
    x, y = torch.randn(128, 3, 32, 32).contiguous(memory_format=NHWC), torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    counts, times = [], []
    for step in range(steps + 2):
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if step >= 2:  # after the warm-up steps
            times.append(time.perf_counter() - start)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(f"\nResNet-110 training step (batch 128, NHWC), median of {steps}: {statistics.median(counts):.0f} page "
          f"faults, {1e3 * statistics.median(times):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=8, help="ResNet-110 steps for the page-fault count")
    parser.add_argument("--faults-only", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()} kernels, "
          f"{torch.get_num_threads()} threads\n")
    if not args.faults_only:
        blocks(args.reps)
        ops(args.reps)
    faults(args.steps)


if __name__ == "__main__":
    main()
