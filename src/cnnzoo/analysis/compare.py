"""Registered models side by side (``cnnzoo compare``): size, compute, depth, paper error, measured speeds.

The params-against-error and MACs-against-error charts are the ones the
architecture papers of this era argue with: a better network sits lower for
the same cost, and a log cost axis shows the orders of magnitude between
AlexNet, GoogLeNet and VGG at a glance.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..files import write_bytes
from ..registry import create_model, model_cfg
from .bench import benchmark
from .complexity import count_params, meta_model, trace
from .report import Column, decimal, integer, render


@dataclass
class Comparison:
    model: str
    img_size: int
    params: int
    gmacs: float  # per image at img_size
    depth: int  # weight layers on the longest path (see complexity.weight_depth)
    top1_err: float | None  # reference (the paper's unless eval_note names another source), %
    top5_err: float | None
    eval_note: str  # how the error was measured, and by whom when not the paper
    infer_img_s: float | None  # measured here, None when not measured
    train_steps_s: float | None  # training steps/s at the same batch size (the Xception paper's speed), or None


def compare(names: list[str], input_size: int | None = None, speed: bool = True, batch_size: int = 1,
            steps: int = 3, device: str = "auto") -> list[Comparison]:
    """One ``Comparison`` per registered model, at its own input size unless ``input_size`` is given.

    ``speed`` measures inference images/s and training steps/s (forward,
    backward, SGD update) with randomly initialised weights (``steps`` timed
    batches of ``batch_size`` after one warm-up batch each).
    """
    rows = []
    for name in names:
        cfg = model_cfg(name)
        size = input_size or cfg.img_size
        meta = meta_model(name)
        tr = trace(meta, size)
        img_s = steps_s = None
        if speed:
            model = create_model(name)
            timing = dict(batch_size=batch_size, input_size=size, device=device, warmup=1, steps=steps, name=name)
            img_s = benchmark(model, "infer", **timing).samples_per_sec
            steps_s = 1000 / benchmark(model, "train", **timing).step_time  # step_time is in ms
        rows.append(Comparison(name, size, count_params(meta), tr.total.macs / 1e9, tr.total.depth,
                               cfg.top1_err, cfg.top5_err, cfg.eval_note, img_s, steps_s))
    return rows


COMPARE_COLUMNS = [
    Column("model", "model", left=True),
    Column("img_size", "input"),
    Column("params", "params", integer),
    Column("gmacs", "GMACs", decimal(3)),
    Column("depth", "depth"),
    Column("top1_err", "top-1 err %", decimal(2)),
    Column("top5_err", "top-5 err %", decimal(2)),
    Column("infer_img_s", "infer img/s", decimal(2)),
    Column("train_steps_s", "train steps/s", decimal(2)),
    Column("eval_note", "evaluation (source)", left=True),
]


def format_comparison(rows: list[Comparison], fmt: str = "text") -> str:
    return render(COMPARE_COLUMNS, [asdict(r) for r in rows], fmt)


def _label_sides(points: list[tuple[float, float]]) -> tuple[list, list[bool]]:
    """Put each label (points sorted by x) below its point when the next point is higher, else above;
    flip it when the previous label, close by, sits on the same side, so neighbours do not overlap."""
    below = []
    for i, (x, y) in enumerate(points):
        side = i + 1 < len(points) and points[i + 1][1] > y
        if i and side == below[-1] and x / points[i - 1][0] < 1.6:
            side = not side
        below.append(side)
    return points, below


def plot_comparison(rows: list[Comparison], path: str, metric: str = "top1_err") -> list[str]:
    """Write params-vs-error and MACs-vs-error charts (log cost axes, labelled points) to ``path``.

    Points are coloured by how the paper measured the error (its ``eval_note``:
    CIFAR-10 test error is not ImageNet error). Returns the models left out
    because their paper gives no ``metric``.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    shown = [r for r in rows if getattr(r, metric) is not None]
    left_out = [r.model for r in rows if getattr(r, metric) is None]
    if not shown:
        raise ValueError(f"none of {', '.join(r.model for r in rows)} has a paper {metric.replace('_', ' ')}; "
                         "compare models whose papers report it")
    label = {"top1_err": "top-1 error (%)", "top5_err": "top-5 error (%)"}[metric]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, key, title in ((axes[0], "params", "parameters"), (axes[1], "gmacs", "GMACs per image")):
        for note in dict.fromkeys(r.eval_note for r in shown):  # one colour per way of measuring the error
            group = [r for r in shown if r.eval_note == note]
            xs = [r.params / 1e6 if key == "params" else r.gmacs for r in group]
            ys = [getattr(r, metric) for r in group]
            ax.scatter(xs, ys, s=40, zorder=3, label=note or "paper's evaluation not stated")
            labels: dict[tuple, list[str]] = {}  # models on the same spot share one label
            for r, x, y in zip(group, xs, ys):
                labels.setdefault((round(math.log(x), 1), y), []).append(f"{r.model} ({r.img_size}px)")
            for (x, y), below in zip(*_label_sides(sorted(zip(xs, ys)))):
                names = labels.pop((round(math.log(x), 1), y), None)
                if names:
                    ax.annotate(", ".join(names), (x, y), textcoords="offset points", fontsize=8,
                                xytext=(5, -11 if below else 4))
        ax.legend(fontsize=8, title="error measured on", title_fontsize=8, loc="best")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 0.1, 1, 10 rather than powers of ten
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)  # an error axis spans less than a decade: label 6, 7, 8 ...
        ax.set_xlabel("parameters (millions, log scale)" if key == "params" else "GMACs per image (log scale)")
        ax.set_ylabel(f"paper {label}, log scale")
        ax.set_title(f"{label.split(' (')[0]} against {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.25, y=0.1)
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue())  # atomically: a full disk keeps the previous plot
    return left_out
