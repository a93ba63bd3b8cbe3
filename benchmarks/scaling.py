"""Cost as work grows: training-step time against batch size and input size, cnnzoo's and the peer's.

For three families (ResNet-50 and DenseNet-121 against torchvision, Xception
against timm's legacy_xception), both models get the same weights
(``benchmarks/peers.py``'s ``pair``) and their training steps (forward,
cross-entropy, backward, SGD update; each library's defaults: cnnzoo's in the
trainer's NHWC, the peer's in NCHW) are timed
in turns at each batch size (input size fixed) and each input size (batch
fixed). The plot (``benchmarks/scaling.png``) has the step time on log-log axes
above and the work done per second below (images/s against batch size,
megapixels/s against input side): where a curve of the lower row stops
rising, that path has stopped scaling (the device is full, or memory traffic
or per-op overhead dominates). The measured points also go to a CSV.

    PYTHONPATH=src python benchmarks/scaling.py --quick                  # small sweep, a few minutes on a CPU
    PYTHONPATH=src python benchmarks/scaling.py --device cuda            # the full sweep on a GPU
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402
import torch  # noqa: E402

import peers  # noqa: E402
from cnnzoo.analysis.bench import make_step, resolve_device  # noqa: E402

FAMILIES = ("resnet50", "densenet121", "xception")
HERE = Path(__file__).parent
# (batch sizes at the fixed input side, input sides at the fixed batch size)
SWEEPS = {
    "quick": dict(batches=(1, 2, 4, 8), batch_side=64, sides=(32, 64, 96, 128), side_batch=2, rounds=1, steps=1),
    "cpu": dict(batches=(1, 2, 4, 8, 16, 32), batch_side=224, sides=(64, 128, 160, 224, 299), side_batch=4,
                rounds=3, steps=1),
    "cuda": dict(batches=(1, 4, 16, 32, 64, 128, 256), batch_side=224, sides=(64, 128, 224, 299, 384, 512),
                 side_batch=32, rounds=3, steps=3),
}


def step_times(ours: torch.nn.Module, peer: torch.nn.Module, batch: int, side: int, device: torch.device,
               rounds: int, steps: int) -> dict[str, float]:
    """Median training-step seconds of both models on one batch shape, timed in turns."""
    x = torch.randn(batch, 3, side, side, device=device)
    mine = make_step(ours, x.contiguous(memory_format=peers.TRAINER_LAYOUT), "train")  # ours as its trainer runs it
    turns = peers.alternate_rounds({"ours": mine, "peer": make_step(peer, x, "train")}, rounds, steps)
    return {key: statistics.median(t for turn in runs for t in turn) for key, runs in turns.items()}


def measure(families, sweep: dict, device: torch.device) -> list[dict]:
    points = []
    for name in families:
        ours, peer = peers.pair(name, sweep["batch_side"])
        ours, peer = ours.to(device, memory_format=peers.TRAINER_LAYOUT), peer.to(device)
        shapes = [("batch", b, b, sweep["batch_side"]) for b in sweep["batches"]]
        shapes += [("side", s, sweep["side_batch"], s) for s in sweep["sides"]]
        for axis, value, batch, side in shapes:
            t = step_times(ours, peer, batch, side, device, sweep["rounds"], sweep["steps"])
            for who, seconds in t.items():
                points.append(dict(model=name, side_of=who, axis=axis, batch=batch, img_size=side, step_s=seconds))
            print(f"{name:12s} batch {batch:4d} {side:4d}px  ours {t['ours'] * 1e3:9.1f} ms  "
                  f"peer {t['peer'] * 1e3:9.1f} ms", flush=True)
        del ours, peer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return points


def plot(points: list[dict], title: str, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharex="col")
    colors = dict(zip(FAMILIES, ("tab:blue", "tab:orange", "tab:green")))
    for name in dict.fromkeys(p["model"] for p in points):
        for who, style in (("ours", "-o"), ("peer", "--s")):
            label = f"{name} ({'cnnzoo' if who == 'ours' else peers.PEERS[name][0]})"
            for col, axis in enumerate(("batch", "side")):
                pts = sorted((p for p in points if p["model"] == name and p["side_of"] == who and p["axis"] == axis),
                             key=lambda p: p["batch"] if axis == "batch" else p["img_size"])
                x = [p["batch"] if axis == "batch" else p["img_size"] for p in pts]
                ms = [p["step_s"] * 1e3 for p in pts]
                rate = [p["batch"] / p["step_s"] * (1 if axis == "batch" else p["img_size"] ** 2 / 1e6) for p in pts]
                kw = dict(color=colors.get(name), markersize=4, label=label)
                axes[0, col].plot(x, ms, style, **kw)
                axes[1, col].plot(x, rate, style, **kw)
    batch_side = next(p["img_size"] for p in points if p["axis"] == "batch")
    side_batch = next(p["batch"] for p in points if p["axis"] == "side")
    axes[0, 0].set_title(f"training step vs batch size ({batch_side}x{batch_side} input)")
    axes[0, 1].set_title(f"training step vs input side (batch {side_batch})")
    axes[0, 0].set_ylabel("step time (ms, log)")
    axes[0, 1].set_ylabel("step time (ms, log)")
    axes[1, 0].set_ylabel("images / s")
    axes[1, 1].set_ylabel("megapixels / s")
    axes[1, 0].set_xlabel("batch size (log)")
    axes[1, 1].set_xlabel("input side, pixels (log)")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for col, axis in enumerate(("batch", "side")):
        ticks = sorted({p["batch"] if axis == "batch" else p["img_size"] for p in points if p["axis"] == axis})
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="both", alpha=0.3)
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    for col, axis in enumerate(("batch", "side")):  # a slope-1 guide: time proportional to the work
        x = sorted({p["batch"] if axis == "batch" else p["img_size"] for p in points if p["axis"] == axis})
        first = min(p["step_s"] for p in points if p["axis"] == axis) * 1e3
        power = 1 if axis == "batch" else 2
        axes[0, col].plot(x, [first * (v / x[0]) ** power for v in x], ":", color="grey",
                          label="time proportional to work")
    axes[0, 0].legend(fontsize=8)
    axes[1, 1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="a small sweep at small inputs, one round")
    parser.add_argument("--models", default=",".join(FAMILIES), help="comma-separated, from " + ", ".join(FAMILIES))
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=HERE / "scaling.png", help="the plot (a CSV goes beside it)")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in FAMILIES]
    if unknown or not models:
        parser.error(f"--models takes names from {', '.join(FAMILIES)}; got {args.models!r}")
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = SWEEPS["quick" if args.quick else device.type]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    title = (f"cnnzoo (solid) vs peer (dashed), training step, fp32, {where}, torch {torch.__version__}; "
             f"median of {sweep['rounds']} x {sweep['steps']} alternating steps")
    points = measure(models, sweep, device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(points, title, args.out)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(points[0]))
        writer.writeheader()
        writer.writerows(points)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
