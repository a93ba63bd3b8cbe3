"""cnnzoo against timm and torchvision on one device, in one command: a Markdown report for a GPU.

Three sections, each timed side by side in one process (the two sides take
turns, ours then the peer's, for several rounds, so the device's clocks and
other load hit both alike), on the same weights (the peer's, calibrated and
imported by ``cnnzoo.import_weights``, as ``benchmarks/peers.py`` does):

1. Training: images/s of a training step (forward, cross-entropy, backward,
   SGD update) under bf16 autocast with channels_last on both sides, for
   resnet50, xception, inception_resnet_v2 and densenet121.
2. Stochastic depth: the training-step time of CIFAR ResNet-110 with p_L = 0.5
   (batch mode: a closed gate skips its block) over the same network without
   it, next to the expected-compute ratio E[L~] / L and the ratio expected from each stage's measured block
   cost (``benchmarks/stochastic_depth.py``).
3. Inference: images/s of ``cnnzoo.deploy(model)`` (BN folded, channels_last)
   against the peer's eager model, same autocast.

Ratios are ours / peer's images/s from the median step times; the spread is
the lowest and highest ratio of single rounds. A peer whose library is not
installed, or a model that fails (out of memory, say), gets a row that says so.

    PYTHONPATH=src python benchmarks/gpu_report.py --device cuda          # under 8 minutes on one GPU
    PYTHONPATH=src python benchmarks/gpu_report.py --device cpu --quick   # about a minute on a CPU (CI)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import cnnzoo
import peers
import stochastic_depth
from cnnzoo.analysis.bench import make_step, resolve_device
from cnnzoo.deploy import deploy

TRAIN_MODELS = ("resnet50", "xception", "inception_resnet_v2", "densenet121")
DEPLOY_MODELS = ("resnet50", "googlenet_bn", "densenet121", "xception", "inception_resnet_v2")
DEFAULT_OUT = Path(__file__).parent / "results" / "gpu_report.md"


@dataclass(frozen=True)
class Settings:
    batch: int  # images per step, training and inference
    input_size: int | None  # square side; None: each model's own (224 or 299)
    rounds: int  # turns per side
    steps: int  # timed steps per turn
    warmup: int  # untimed steps per side first (cuDNN autotuning, allocator)
    sd_batch: int  # ResNet-110 batch (32x32 images)
    sd_rounds: int
    sd_steps: int
    train_models: tuple[str, ...]
    deploy_models: tuple[str, ...]


FULL = Settings(batch=128, input_size=None, rounds=5, steps=10, warmup=3, sd_batch=128, sd_rounds=5, sd_steps=20,
                train_models=TRAIN_MODELS, deploy_models=DEPLOY_MODELS)
# Small enough for a CPU in CI: every section and training model, at a tiny batch and input size
# (75: the smallest Inception-ResNet-v2 takes).
QUICK = Settings(batch=2, input_size=75, rounds=2, steps=1, warmup=1, sd_batch=8, sd_rounds=2, sd_steps=2,
                 train_models=TRAIN_MODELS, deploy_models=("resnet50",))


@dataclass
class Pair:
    """Median seconds per step of two sides timed in turns, and the ratio of their speeds."""
    ours: float
    peer: float
    low: float  # lowest single-round ratio peer / ours of step times
    high: float

    @classmethod
    def of(cls, times: dict[str, list[list[float]]], ours: str = "ours", peer: str = "peer") -> Pair:
        per_round = [statistics.median(p) / statistics.median(o) for o, p in zip(times[ours], times[peer])]
        median = {k: statistics.median(t for turn in times[k] for t in turn) for k in (ours, peer)}
        return cls(median[ours], median[peer], min(per_round), max(per_round))

    @property
    def ratio(self) -> float:  # > 1: ours is faster
        return self.peer / self.ours


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        cuda, cudnn = torch.version.cuda, torch.backends.cudnn.version()
        return f"{torch.cuda.get_device_name(device)} (CUDA {cuda}, cuDNN {cudnn})"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def failure(name: str, error: Exception) -> str:
    library = peers.PEERS[name][0]
    if isinstance(error, ImportError) and (error.name or "").split(".")[0] == library:
        return f"peer library {library} is not installed"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "out of memory at this batch size"
    return f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def peer_label(name: str) -> str:
    library, fn, _ = peers.PEERS[name]
    return f"{library} {fn}"


def side_by_side(s: Settings, device: torch.device, names, columns: str, steps_of) -> list[str]:
    """A table row per model: its two sides' images/s, their ratio and spread, or why there are none.

    ``steps_of(ours, peer, size, x)`` gives the {"ours": step, "peer": step} to time in turns on batch ``x``.
    """
    rows = [f"| model | peer | batch | size | {columns} | spread (per round) | note |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|"]
    for name in names:
        size = s.input_size or cnnzoo.model_cfg(name).img_size
        head = f"| {name} | {peer_label(name)} | {s.batch} | {size} |"
        try:
            ours, peer = peers.pair(name, size)
            steps = steps_of(ours, peer, size, torch.randn(s.batch, 3, size, size, device=device))
            t = Pair.of(peers.alternate_rounds(steps, s.rounds, s.steps, warmup=s.warmup))
            rows.append(f"{head} {s.batch / t.ours:.1f} | {s.batch / t.peer:.1f} | {t.ratio:.3f} | "
                        f"{t.low:.3f}-{t.high:.3f} | |")
        except Exception as error:  # one model's failure must not lose the others' rows
            rows.append(f"{head} n/a | n/a | n/a | n/a | {failure(name, error)} |")
        print(rows[-1], flush=True)
        steps = ours = peer = None
        free(device)
    return rows


def train_section(s: Settings, device: torch.device, amp: bool) -> list[str]:
    def steps_of(ours, peer, size, x):
        x = x.contiguous(memory_format=torch.channels_last)
        return {side: make_step(model.to(device, memory_format=torch.channels_last), x, "train", amp)
                for side, model in (("ours", ours), ("peer", peer))}

    title = f"## Training: images/s, bf16 autocast {'on' if amp else 'off'}, channels_last, SGD with momentum"
    return [title, ""] + side_by_side(s, device, s.train_models, "ours img/s | peer img/s | ours / peer", steps_of)


def stochastic_depth_section(s: Settings, device: torch.device) -> list[str]:
    base, batch_mode = stochastic_depth.BASELINE, stochastic_depth.BATCH_MODE
    torch.manual_seed(0)
    cases = stochastic_depth.resnet110_cases()
    gates = [g.survival_prob for g in stochastic_depth.gates_of(cases[batch_mode]).values()]
    x = torch.randn(s.sd_batch, 3, 32, 32, device=device)
    steps = {name: make_step(cases[name].to(device), x, "train") for name in (base, batch_mode)}
    times = peers.alternate_rounds(steps, s.sd_rounds, s.sd_steps, warmup=s.warmup)
    flat = {name: [t for turn in turns for t in turn] for name, turns in times.items()}
    per_round = [statistics.mean(b) / statistics.mean(a) for a, b in zip(times[base], times[batch_mode])]
    ratio = stochastic_depth.mean_ratio(flat, batch_mode, base)
    expected, _ = stochastic_depth.expected_ratio(cases[batch_mode], steps[batch_mode], steps[base], s.sd_rounds)
    free(device)
    return [f"## Stochastic depth: CIFAR ResNet-110 training step, batch {s.sd_batch}, 32x32, fp32",
            "",
            "| case | mean step ms | step time / no stochastic depth | spread (per round) | expected compute E[L~]/L "
            "| expected from measured block costs |",
            "|---|--:|--:|--:|--:|--:|",
            f"| {base} | {statistics.mean(flat[base]) * 1e3:.2f} | 1.000 | | 1.000 | 1.000 |",
            f"| {batch_mode} | {statistics.mean(flat[batch_mode]) * 1e3:.2f} | {ratio:.3f} | "
            f"{min(per_round):.3f}-{max(per_round):.3f} | {sum(gates) / len(gates):.3f} | {expected:.3f} |"]


def inference_section(s: Settings, device: torch.device, amp: bool) -> list[str]:
    def steps_of(ours, peer, size, x):
        return {"ours": make_step(deploy(ours, size).to(device), x, "infer", amp),
                "peer": make_step(peer.to(device), x, "infer", amp)}

    title = (f"## Inference: cnnzoo.deploy (BN folded, channels_last) against the peer's eager model, "
             f"bf16 autocast {'on' if amp else 'off'}")
    columns = "deployed img/s | peer eager img/s | deployed / peer"
    return [title, ""] + side_by_side(s, device, s.deploy_models, columns, steps_of)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="tiny batch and inputs, two rounds: a CPU check for CI")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown file to write (default {DEFAULT_OUT})")
    parser.add_argument("--batch-size", type=int, help="override the batch size (default: 128, --quick 2)")
    parser.add_argument("--rounds", type=int, help="override the turns per side (default: 5, --quick 2)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as error:
        parser.error(str(error))
    s = QUICK if args.quick else FULL
    if args.batch_size is not None or args.rounds is not None:
        if min(v for v in (args.batch_size, args.rounds) if v is not None) < 1:
            parser.error("--batch-size and --rounds must be at least 1")
        s = replace(s, batch=args.batch_size or s.batch, rounds=args.rounds or s.rounds)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides alike; the warm-up steps absorb the autotuning
    amp = not args.no_amp

    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "benchmarks/gpu_report.py", *map(shlex.quote, given)])
    header = ["# cnnzoo against its peers: training, stochastic depth, deployed inference", "",
              f"- command: `{command}`",
              f"- device: {device} - {device_name(device)}",
              f"- torch {torch.__version__}, Python {platform.python_version()}",
              f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
              f"- {s.rounds} rounds of {s.steps} timed step(s) per side, taking turns, "
              f"after {s.warmup} warm-up step(s); "
              "ratios > 1 mean cnnzoo is faster",
              ""]
    print("\n".join(header), flush=True)
    report = header + train_section(s, device, amp) + [""]
    sd = stochastic_depth_section(s, device)
    print("\n".join(sd), flush=True)
    report += sd + [""] + inference_section(s, device, amp)
    text = "\n".join(report) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\n{'=' * 20} wrote {args.out}\n\n{text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
