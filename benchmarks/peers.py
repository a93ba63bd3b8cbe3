"""cnnzoo's models against the same architectures in torchvision, timm and pretrainedmodels, step for step.

For every seed architecture that a peer also implements (and that cnnzoo
registers: others are listed as skipped), both models get the peer's weights
(its state dict, converted by ``cnnzoo.import_weights``, batch norm statistics
first calibrated on random batches so the logits are realistic), then their
inference and training steps are timed alternately (ours, peer, ours, peer...)
at the same batch and input size, so that load from other processes hits
both alike. Each side trains with its library's defaults: cnnzoo's models in
the memory format its trainer uses (NHWC), the peer's in NCHW. Reports
images/s, the ratio ours / peer, our achieved GFLOP/s and its fraction of
this machine's fp32 peak: the higher of a large matmul's rate and a large
3x3 conv's (on AMD CPUs MKL's sgemm stays well below oneDNN's convs).

The deploy rows compare ``cnnzoo.deploy(ours)`` (BN folded, channels_last)
with the peer's eager model, same weights, inference only, and check that
the logits agree. ``--profile NAME`` prints where the deployed model and the
peer spend their time (torch.profiler, by operator).

    PYTHONPATH=src python benchmarks/peers.py                       # everything, paper input sizes, batch 8
    PYTHONPATH=src python benchmarks/peers.py --models resnet18,resnet50 --rounds 3 --steps 1 --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import torch

import cnnzoo
from cnnzoo.analysis.bench import conv_gflops, make_step, matmul_gflops, time_steps
from cnnzoo.analysis.complexity import count_macs
from cnnzoo.deploy import deploy
from cnnzoo.engine.config import TrainConfig

# Our name -> (peer library, its constructor, keyword arguments, weight layout for import_weights).
PEERS = {
    "alexnet_tv": ("torchvision", "alexnet", {}),
    **{f"vgg{d}{bn}": ("torchvision", f"vgg{d}{bn}", {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet_bn": ("torchvision", "googlenet", {"aux_logits": False, "init_weights": True}),
    **{f"resnet{d}": ("torchvision", f"resnet{d}", {}) for d in (18, 34, 50, 101, 152)},
    **{f"densenet{d}": ("torchvision", f"densenet{d}", {}) for d in (121, 161, 169, 201)},
    "xception": ("timm", "legacy_xception", {}),
    "inception_resnet_v2": ("timm", "inception_resnet_v2", {}),
    "polynet": ("pretrainedmodels", "polynet", {}),
}
DEPLOY_TARGETS = ("resnet50", "googlenet_bn", "densenet121")
TRAINER_LAYOUT = torch.channels_last if TrainConfig().channels_last else torch.contiguous_format


def build_peer(name: str) -> torch.nn.Module:
    library, fn, kwargs = PEERS[name]
    if library == "torchvision":
        return getattr(importlib.import_module("torchvision.models"), fn)(**kwargs)
    if library == "timm":
        return importlib.import_module("timm").create_model(fn, pretrained=False, **kwargs)
    return getattr(importlib.import_module("pretrainedmodels"), fn)(num_classes=1000, pretrained=None, **kwargs)


@torch.no_grad()
def calibrate(model: torch.nn.Module, size: int, batches: int = 2) -> None:
    """Give batch norm realistic running statistics (random init leaves mean 0, var 1, and deep nets blow up)."""
    model.train()
    for _ in range(batches):
        model(torch.randn(4, 3, size, size))
    model.eval()


def pair(name: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our model and the peer's, holding the same (calibrated) weights."""
    torch.manual_seed(0)
    peer = build_peer(name)
    calibrate(peer, size)
    ours = cnnzoo.create_model(name)
    cnnzoo.import_weights(ours, peer.state_dict(), source=PEERS[name][0])
    return ours.eval(), peer.eval()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def alternate_rounds(steps: dict, rounds: int, steps_per_turn: int, clock=time.perf_counter,
                     warmup: int = 1) -> dict[str, list[list[float]]]:
    """Seconds of every timed step of each named step function, one list per round; the functions take turns
    (``warmup`` untimed steps each first)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            times[key].append(time_steps(step, steps_per_turn, clock))
    return times


def alternate(steps: dict, rounds: int, steps_per_turn: int, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per step of each named step function, timed in turns (one warm-up step each first)."""
    times = alternate_rounds(steps, rounds, steps_per_turn, clock)
    return {key: statistics.median(t for turn in turns for t in turn) for key, turns in times.items()}


def pairs(names, batch, input_size, header: list[str]):
    """Print a table's header, then yield each model's name, size, our model, the peer's and a batch.

    Where cnnzoo does not register the model (yet), ours is None and the size is ``input_size`` or 224.
    """
    print("\n".join(header), flush=True)
    registered = set(cnnzoo.list_models())
    for name in names:
        if name in registered:
            size = input_size or cnnzoo.model_cfg(name).img_size
            ours, peer = pair(name, size)
        else:
            size, ours = input_size or 224, None
            torch.manual_seed(0)
            peer = build_peer(name)
            calibrate(peer, size)
        yield name, size, ours, peer, torch.randn(batch, 3, size, size)


def speed_rows(names, modes, batch, input_size, rounds, steps, peak, clock) -> list[str]:
    rows = ["| model | peer | mode | batch | size | ours img/s | peer img/s | ours / peer | ours GFLOP/s | of peak |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, size, ours, peer, x in pairs(names, batch, input_size, rows[:]):
        macs = count_macs(ours, size)
        for mode in modes:
            # ours trains as cnnzoo's trainer runs it (NHWC, TrainConfig.channels_last); the peer in its default NCHW
            layout = TRAINER_LAYOUT if mode == "train" else torch.contiguous_format
            mine = make_step(ours.to(memory_format=layout), x.contiguous(memory_format=layout), mode)
            t = alternate({"ours": mine, "peer": make_step(peer, x, mode)}, rounds, steps, clock)
            gflops = 2 * macs * batch * (3 if mode == "train" else 1) / t["ours"] / 1e9
            library, fn, _ = PEERS[name]
            rows.append(f"| {name} | {library} {fn} | {mode} | {batch} | {size} | {batch / t['ours']:.2f} | "
                        f"{batch / t['peer']:.2f} | {t['peer'] / t['ours']:.3f} | {gflops:.1f} | {gflops / peak:.1%} |")
            print(rows[-1], flush=True)
    return rows


def deploy_rows(names, batch, input_size, rounds, steps, compiled: bool, clock, peak) -> list[str]:
    head = ("| model | deployed img/s | peer eager img/s | deployed / peer | eager ours / peer | deployed GFLOP/s |"
            " of peak |")
    rule = "|---|--:|--:|--:|--:|--:|--:|"
    if compiled:
        head, rule = head + " deployed+compile / peer | compiled GFLOP/s | of peak |", rule + "--:|--:|--:|"
    rows = [head + " max abs logit diff |", rule + "--:|"]
    for name, size, ours, peer, x in pairs(names, batch, input_size, rows[:]):
        candidates = {"peer": make_step(peer, x)}
        if ours is None:  # deploy is generic: show it on the peer's own module until cnnzoo has the model
            name, ours = f"{name} (peer's module deployed)", peer
        else:
            candidates["ours"] = make_step(ours, x)
        fast = deploy(ours, size)
        with torch.inference_mode():
            diff = (fast(x) - peer(x)).abs().max().item()
        candidates["deployed"] = make_step(fast, x)
        if compiled:  # compiles during alternate()'s warm-up step
            candidates["compiled"] = make_step(deploy(ours, size, compile=True), x)
        t = alternate(candidates, rounds, steps, clock)
        eager = f"{t['peer'] / t['ours']:.3f}" if "ours" in t else "n/a"
        flops = 2 * count_macs(ours, size) * batch
        gflops = flops / t["deployed"] / 1e9
        extra = ""
        if compiled:
            rate = flops / t["compiled"] / 1e9
            extra = f" {t['peer'] / t['compiled']:.3f} | {rate:.1f} | {rate / peak:.1%} |"
        rows.append(f"| {name} | {batch / t['deployed']:.2f} | {batch / t['peer']:.2f} | "
                    f"{t['peer'] / t['deployed']:.3f} | {eager} | {gflops:.1f} | {gflops / peak:.1%} |{extra} "
                    f"{diff:.1e} |")
        print(rows[-1], flush=True)
    return rows


def profile(name: str, batch: int, input_size: int | None) -> None:
    """Operator-level time of the deployed model and the peer's eager one, one inference batch each."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    for name, size, ours, peer, x in pairs([name], batch, input_size, []):
        deployed = deploy(peer if ours is None else ours, size)
        for label, model in (("deployed", deployed), (f"{PEERS[name][0]} eager", peer)):
            step = make_step(model, x)
            step()
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            print(f"\n### {name}, {label}, batch {batch}, {size}x{size}\n")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated cnnzoo names (default: every one with a peer)")
    parser.add_argument("--modes", default="infer,train", help="infer, train or both")
    parser.add_argument("--deploy", default=",".join(DEPLOY_TARGETS), help="models for the deploy rows ('' for none)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, help="square input side (default: each model's own)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per model (ours, peer, ...)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per turn")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time deploy(..., compile=True)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    parser.add_argument("--profile", metavar="NAME", help="only profile NAME deployed against the peer")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.profile, args.batch_size, args.input_size)
        return 0

    wanted = args.models.split(",") if args.models else list(PEERS)
    unknown = [n for n in wanted if n not in PEERS]
    if unknown:
        parser.error(f"no peer known for {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    registered = set(cnnzoo.list_models())
    names = [n for n in wanted if n in registered]
    deploy_names = [n for n in args.deploy.split(",") if n]
    skipped = sorted({n for n in wanted if n not in registered})

    clock = CLOCKS[args.clock]
    # The ceiling: the best rate seen, measured before and again before the deploy rows (a shared VM's speed drifts)
    matmul, conv = matmul_gflops(steps=20, clock=clock), conv_gflops(steps=10, clock=clock)
    peak = max(matmul, conv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {args.clock} clock; "
          f"fp32 GFLOP/s: matmul 2048^2 {matmul:.1f}, 3x3 conv 256ch 56x56 {conv:.1f} (peak = the higher)",
          flush=True)
    if skipped:
        print(f"skipped, not registered in this cnnzoo: {', '.join(skipped)} (deploy rows use the peer's module)",
              flush=True)
    modes = [m for m in args.modes.split(",") if m]
    speed_rows(names, modes, args.batch_size, args.input_size, args.rounds, args.steps, peak, clock)
    if deploy_names:
        again = max(matmul_gflops(steps=20, clock=clock), conv_gflops(steps=10, clock=clock))
        peak = max(peak, again)
        print(f"fp32 peak measured again: {again:.1f} GFLOP/s; deploy rows use the best, {peak:.1f}", flush=True)
        deploy_rows(deploy_names, args.batch_size, args.input_size, args.rounds, args.steps, args.compile, clock, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
