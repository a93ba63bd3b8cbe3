"""What a run records: accuracy counts, and the run folder's metrics.csv, TensorBoard events and curves.png."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import atomic_write

# The columns measured by the clock (they differ between two runs that are otherwise identical): the training
# time of the epoch, its images/s, and the share of that time the loop waited for its next batches.
TIMING_COLUMNS = ["epoch_seconds", "images_per_s", "data_wait_pct"]
COLUMNS = ["epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", *TIMING_COLUMNS]
# The averaged weights' scores (``ema_decay`` > 0): written only by runs that average, so the files of runs
# that do not (and of older runs) keep the columns above; ``read_metrics`` reads either.
EMA_COLUMNS = ["ema_test_loss", "ema_test_top1", "ema_test_top5"]


@dataclass
class Tally:
    """Running sums over an epoch: loss x samples, top-1 and top-5 hits, samples, seconds, and of those
    seconds the ones spent waiting for batches (``data_seconds``).

    ``add`` keeps the loss and hit sums as tensors on the device the batch is on,
    so adding a batch never waits for the device; only reading them (``to_dict``,
    ``percentages``: at log points, checkpoints and the end of an epoch) does.
    ``to_dict`` gives plain numbers for the checkpoint, so a mid-epoch resume continues the sums.
    """

    loss: Tensor | float = 0.0
    top1: Tensor | float = 0.0
    top5: Tensor | float = 0.0
    n: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0

    def add(self, loss: Tensor, scores: Tensor, labels: Tensor) -> None:
        """Add one batch: its mean loss (a 0-d tensor, not read here) and its class scores (logits or probabilities)."""
        k = min(5, scores.shape[1])
        top = scores.topk(k, dim=1).indices
        hits = top == labels[:, None]
        self.loss = self.loss + loss.detach().to(torch.float64) * len(labels)
        self.top1 = self.top1 + hits[:, 0].sum()
        self.top5 = self.top5 + hits.any(dim=1).sum()
        self.n += len(labels)

    def to_dict(self) -> dict[str, float]:
        return {"loss": float(self.loss), "top1": float(self.top1), "top5": float(self.top5),
                "n": int(self.n), "seconds": float(self.seconds), "data_seconds": float(self.data_seconds)}

    def images_per_s(self) -> float:
        return self.n / max(self.seconds, 1e-9)

    def data_wait_pct(self) -> float:
        """The share of the training time spent waiting for batches, in %."""
        return 100.0 * self.data_seconds / max(self.seconds, 1e-9)

    def percentages(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"loss": float(self.loss) / n, "top1": 100.0 * float(self.top1) / n,
                "top5": 100.0 * float(self.top5) / n}


@dataclass
class RunLog:
    """The run folder's human-readable record, rewritten from the full history each epoch.

    ``folder`` is None on every DDP rank but 0: only one process writes.
    """

    folder: Path | None
    tensorboard: bool = True
    purge_step: int | None = None  # on resume: TensorBoard drops events logged after the checkpoint
    plot_every: float = 60.0  # seconds between curves.png redraws (a plot costs ~1 s); always drawn at close
    _writer: object = field(default=None, init=False, repr=False)
    _history: list = field(default_factory=list, init=False, repr=False)
    _plotted: float = field(default_factory=time.monotonic, init=False, repr=False)

    def __post_init__(self):
        if self.folder is not None and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            self._writer = SummaryWriter(str(self.folder), purge_step=self.purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for tag, value in values.items():
                if value is not None:
                    self._writer.add_scalar(tag, value, step)
            self._writer.flush()

    def write(self, history: list[dict], step: int) -> None:
        """metrics.csv and curves.png from ``history`` (one dict per epoch), the last row to TensorBoard."""
        if self.folder is None or not history:
            return
        columns = COLUMNS + [k for k in EMA_COLUMNS if any(k in row for row in history)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
        atomic_write(self.folder / "metrics.csv", lambda f: f.write(buf.getvalue().encode()))
        last = history[-1]
        self.scalars({f"{k.replace('_', '/', 1)}": last.get(k) for k in columns[1:]}, step)
        self._history = history
        if time.monotonic() - self._plotted >= self.plot_every:
            self._plot()

    def _plot(self) -> None:
        plot_curves(self._history, self.folder / "curves.png")
        self._plotted = time.monotonic()
        self._history = []

    def close(self) -> None:
        """Draw the curves still pending and close the TensorBoard writer (safe to call twice)."""
        if self._history:
            self._plot()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def read_metrics(path: str | Path) -> list[dict[str, float | None]]:
    """metrics.csv back as one dict per epoch (empty cells as None)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v else None) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy against epoch, two panels, written atomically as PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, keys, title in ((loss_ax, ("train_loss", "test_loss", "ema_test_loss"), "loss"),
                            (acc_ax, ("train_top1", "test_top1", "test_top5", "ema_test_top1"), "accuracy %")):
        for key in keys:
            points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax is loss_ax:
            ax.set_yscale("log")  # the first epochs' test loss can be orders of magnitude above the rest
        ax.grid(alpha=0.3)
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def reduce_tally(tally: Tally, reduce) -> Tally:
    """``tally`` summed over DDP processes with ``reduce`` (a function of a float64 tensor)."""
    sums = reduce(torch.tensor([float(tally.loss), float(tally.top1), float(tally.top5), tally.n], dtype=torch.float64))
    return Tally(sums[0].item(), sums[1].item(), sums[2].item(), int(sums[3].item()), tally.seconds,
                 tally.data_seconds)
