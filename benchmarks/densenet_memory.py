"""DenseNet's ``memory_efficient=True`` against the plain model: memory saved and time paid per training step.

A training step here is forward + backward (the optimizer's work is the same for both). Three
measurements, each variant beside the other:

1. kept for backward: bytes of the activations autograd stores during the forward pass
   (``cnnzoo.analysis.memory.saved_activation_bytes``); exact and machine-independent.
2. peak step memory: how far the process's resident memory rises above its level before the
   step, at the step's peak. Each variant runs in a fresh subprocess: one warm-up step (so that
   gradients and one-time buffers exist), then the peak-RSS counter is reset through
   /proc/self/clear_refs and one step is measured against VmHWM. MALLOC_MMAP_THRESHOLD_ makes
   glibc give every freed tensor back to the OS at once, so resident memory follows live memory.
3. step time: both variants in one process with the same weights, steps alternating (the order
   flipped each round), median over the rounds; the ratio is what the recomputation costs.

    python benchmarks/densenet_memory.py                       # DenseNet-BC-100-12, 64 x 32x32
    python benchmarks/densenet_memory.py --model densenet121 --batch 8 --size 224
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import cnnzoo
from cnnzoo.analysis.memory import saved_activation_bytes


def build(args: argparse.Namespace, memory_efficient: bool = False) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = cnnzoo.create_model(args.model, memory_efficient=memory_efficient).train()
    size = args.size or model.default_cfg.img_size
    x = torch.randn(args.batch, 3, size, size)
    return model, x


def step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x).logsumexp(1).sum().backward()


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def child_peak(args: argparse.Namespace) -> None:
    """In a fresh process: resident-memory rise of one training step, printed as JSON."""
    model, x = build(args, args.child == "efficient")
    step(model, x)  # warm-up: gradients, thread pools, kernel caches
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (the peak) to the current resident size
    step(model, x)
    print(json.dumps({"peak_rise_bytes": (_status_kib("VmHWM") - before) * 1024}))


def peak_in_subprocess(variant: str, args: argparse.Namespace) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--child", variant, "--model", args.model, "--batch", str(args.batch),
           "--threads", str(args.threads)] + (["--size", str(args.size)] if args.size else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rise_bytes"]


def step_times(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    plain, x = build(args)
    efficient = copy.deepcopy(plain)
    for m in efficient.modules():
        if hasattr(m, "memory_efficient"):
            m.memory_efficient = True
    times = {id(plain): [], id(efficient): []}
    for model in (plain, efficient):  # warm-up
        step(model, x)
    for r in range(args.rounds):
        for model in (plain, efficient) if r % 2 == 0 else (efficient, plain):
            start = time.perf_counter()
            step(model, x)
            times[id(model)].append(time.perf_counter() - start)
    return times[id(plain)], times[id(efficient)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="densenet_bc_100_12")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, help="input side (default: the model's)")
    p.add_argument("--rounds", type=int, default=5, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--child", choices=["plain", "efficient"], help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child_peak(args)

    mib = 2**20
    kept = {}
    for variant in ("plain", "efficient"):
        model, x = build(args, variant == "efficient")
        kept[variant] = saved_activation_bytes(model, x)
        del model
    peak = {variant: peak_in_subprocess(variant, args) for variant in ("plain", "efficient")}
    t_plain, t_eff = step_times(args)
    m_plain, m_eff = statistics.median(t_plain), statistics.median(t_eff)

    size = args.size or cnnzoo.model_cfg(args.model).img_size
    print(f"{args.model}, batch {args.batch} x {size}x{size}, {args.threads} thread(s), torch {torch.__version__}")
    print("| variant | kept for backward (MiB) | peak step memory (MiB) | step time (s, median) |")
    print("|---|--:|--:|--:|")
    print(f"| plain | {kept['plain'] / mib:.1f} | {peak['plain'] / mib:.1f} | {m_plain:.3f} |")
    print(f"| memory_efficient | {kept['efficient'] / mib:.1f} | {peak['efficient'] / mib:.1f} | {m_eff:.3f} |")
    print(f"| efficient / plain | {kept['efficient'] / kept['plain']:.2f} | {peak['efficient'] / peak['plain']:.2f}"
          f" | {m_eff / m_plain:.2f} |")


if __name__ == "__main__":
    main()
