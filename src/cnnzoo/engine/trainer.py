"""Training and evaluation: the loop, the run folder, resume, and the faults a run survives.

``train(cfg)`` builds the data, model, optimizer and schedule that ``cfg``
describes, then runs epochs of ``Trainer.train_epoch`` (the loop, top to
bottom) and ``evaluate``. Its run folder holds ``config.yaml``,
``metrics.csv``, TensorBoard events, ``curves.png``, ``last.ckpt`` and
``best.safetensors`` (and ``ema.safetensors``, the averaged weights, when
``ema_decay`` is set). A run stopped in any way continues exactly with
``train(cfg, resume=RUN_DIR)``:

- every epoch (and every ``checkpoint_every`` steps) the full state is written
  atomically to ``last.ckpt``;
- SIGINT / SIGTERM finish the current step's bookkeeping, write a checkpoint
  and raise ``Interrupted``;
- a NaN or Inf loss or gradient raises ``NumericalError`` at the next log point
  (``log_every`` steps, the epoch's end, or before any checkpoint is written),
  naming the first bad step; no checkpoint ever holds a non-finite weight, so
  ``last.ckpt`` stays the last good one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from .. import registry
from ..device import resolve_device
from ..analysis import check_input_size
from ..layers.drop import StochasticDepth, seed_gates
from . import distributed
from .checkpoint import (CheckpointError, WriteError, atomic_write, load_checkpoint, load_file, load_weights,
                         rng_state, save_checkpoint, save_weights, set_rng_state)
from .config import ConfigError, TrainConfig, load_config, recipes_of, to_yaml
from .distributed import World
from .ema import WeightAverage
from .finite import FiniteWatch, grad_norm, nonfinite_entries
from .gradflow import GradFlowMonitor, write_grad_flow
from .metrics import RunLog, Tally, reduce_tally
from .optim import build_optimizer, build_scheduler


class TrainingStopped(RuntimeError):
    """Training ended before its last epoch; the message says where and how to continue."""

    exit_code = 2  # the command line's status: a value or data the user gave (e.g. a learning rate that diverges)


class NumericalError(TrainingStopped):
    """The loss became NaN or Inf."""


class Interrupted(TrainingStopped):
    """SIGINT or SIGTERM: a checkpoint was written, ``--resume`` continues."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@dataclass
class Result:
    top1: float  # test top-1 % after the last epoch run (what the summary line prints)
    top5: float
    run_dir: Path | None  # None on DDP ranks other than 0
    epochs_done: int
    finished: bool  # False when stop_after ended the session early (resumable)

    def summary(self) -> str:
        """The one line scripts read: ``top1=NN.NN top5=NN.NN run=DIR``."""
        return f"top1={self.top1:.2f} top5={self.top5:.2f}" + (f" run={self.run_dir}" if self.run_dir else "")


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on GPUs that have it (no loss scaling needed), else fp16; none on CPU by default."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp 'fp16' needs a CUDA device; on CPU use amp=bf16 or amp=off")
    if cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


# An epoch whose loop waited for its batches this share of its time (%) or more is pointed out: data starved it.
DATA_BOUND = 25.0


def learnt_nothing(train_loss: float, train_top1: float, num_classes: int) -> bool:
    """A training loss no lower than a uniform guess's (ln C) and top-1 within 1.5x of chance (100 / C %)."""
    return num_classes > 1 and train_loss >= math.log(num_classes) and train_top1 <= 150 / num_classes


def step_seed(seed: int, step: int) -> int:
    """The stochastic-depth gate seed of training batch ``step`` (counted from the run's start: optimizer steps
    x ``accumulate`` + the micro-batch within the step, so each micro-batch of a step draws its own gates and
    without accumulation it is the step): equal on every rank, and again after a resume.

    A CPU generator keeps only the low 32 bits of its seed, so the run's seed is mixed into those bits
    (shifted above them, every run would drop the same blocks).
    """
    return (seed * 0x9E3779B1 + step) % 2**32


def step_groups(batches: Iterator[Any], accumulate: int, steps: int) -> Iterator[list[Any]]:
    """The next ``steps`` groups of ``accumulate`` consecutive batches: the batches of one optimizer step each."""
    for _ in range(steps):
        yield [next(batches) for _ in range(accumulate)]


def classification_loss(outputs: Tensor | tuple[Tensor, ...], labels: Tensor, criterion: nn.Module,
                        aux_weight: float) -> tuple[Tensor, Tensor]:
    """(loss, main logits). A tuple ``(main, aux1, ...)`` (GoogLeNet in training) adds aux_weight x each aux loss."""
    if isinstance(outputs, (tuple, list)):
        main, *aux = outputs
        return criterion(main, labels) + aux_weight * sum(criterion(a, labels) for a in aux), main
    return criterion(outputs, labels), outputs


@torch.no_grad()
def evaluate(model: nn.Module, loader, autocast=contextlib.nullcontext, channels_last: bool = False,
             world: World = World()) -> dict[str, float]:
    """Test loss, top-1 and top-5 % of ``model`` over ``loader`` (summed over DDP processes).

    Ten-crop batches (N x 10 x C x H x W) are scored by the mean of the ten crops' softmax (AlexNet, GoogLeNet).
    """
    model.eval()
    tally = Tally()
    for images, labels in loader.epoch(0):
        crops = images.shape[1] if images.ndim == 5 else 0
        if crops:
            images = images.flatten(0, 1)  # N*10 x C x H x W
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(images).float()
        if crops:
            probs = logits.softmax(1).unflatten(0, (-1, crops)).mean(1)  # N x classes
            tally.add(F.nll_loss(probs.clamp_min(1e-12).log(), labels), probs, labels)
        else:
            tally.add(F.cross_entropy(logits, labels), logits, labels)
    device = next(model.parameters()).device
    tally = reduce_tally(tally, lambda t: distributed.all_reduce(t.to(device), world).cpu())
    return tally.percentages()


def build_data(spec: str, **kwargs):
    """``cnnzoo.data.build_data``, imported only when a run needs it (no data object was given)."""
    from ..data import build_data as build

    return build(spec, **kwargs)


def model_meta(cfg: TrainConfig, data) -> dict[str, Any]:
    """How to rebuild the trained model and its input (kept in checkpoints and in the safetensors header)."""
    kwargs = dict(cfg.model_kwargs)
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    return {"model": cfg.model, "model_kwargs": kwargs, "data": cfg.data, "num_classes": data.num_classes,
            "in_chans": data.in_chans, "img_size": data.img_size, "mean": list(data.mean), "std": list(data.std)}


def _run_dir(cfg: TrainConfig) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in Path(cfg.data.rstrip("/")).name).strip("_") or "data"
    base = Path(cfg.out) / (cfg.name or f"{cfg.model}-{slug}-{datetime.now():%Y%m%d-%H%M%S}")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_config(cfg: TrainConfig, world: World, device: torch.device) -> None:
    """The argument errors that need no data: each a ConfigError/ValueError of one line."""
    registry.model_cfg(cfg.model)  # an unknown model
    if cfg.batch_size % world.size:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split evenly over {world.size} processes")
    if cfg.img_size is not None:
        check_input_size(cfg.model, cfg.img_size)
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("sync_bn needs CUDA (NCCL); leave it off on CPU")


class Trainer:
    """One training run: its model, optimizer, schedule, data, run folder and position (epoch, step)."""

    def __init__(self, cfg: TrainConfig, data=None, resume: str | Path | None = None):
        self.cfg = cfg
        self._setup_device()
        self.data = data if data is not None else self._build_data()
        self.meta = model_meta(cfg, self.data)
        self.net = self._build_model()
        self._setup_optimisation()
        self._reset_position()
        self._open_run(resume)
        self.model = self._parallel_model()

    def _setup_device(self) -> None:
        """This process's device and place among the DDP processes; kernel choices."""
        cfg = self.cfg
        device = resolve_device(cfg.device)
        self.world = distributed.init(device.type)
        self.device = torch.device("cuda", self.world.local_rank) if device.type == "cuda" else device
        check_config(cfg, self.world, self.device)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = self.device.type == "cuda" and not cfg.deterministic

    def _build_data(self):
        """The data the spec names, this process's shard of it; its classes must agree with ``num_classes``."""
        cfg = self.cfg
        data = build_data(cfg.data, batch_size=cfg.batch_size // self.world.size, img_size=cfg.img_size,
                          augment=cfg.augment, eval_crops=cfg.eval_crops, device=self.device, seed=cfg.seed,
                          rank=self.world.rank, world_size=self.world.size, workers=cfg.workers,
                          strict=cfg.strict_data)
        if cfg.num_classes is not None and cfg.num_classes != data.num_classes:
            raise ConfigError(f"num_classes {cfg.num_classes} disagrees with data {cfg.data!r}, which has"
                              f" {data.num_classes} classes; drop num_classes or fix the data")
        return data

    def _build_model(self) -> nn.Module:
        """The model for the data's classes and channels: identical on every rank (seeded), on the device."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        net = registry.create_model(cfg.model, num_classes=self.data.num_classes, in_chans=self.data.in_chans,
                                    **self.meta["model_kwargs"])
        if cfg.init_weights:  # a resumed run's checkpoint overrides these right after
            load_weights(net, load_file(cfg.init_weights)[0], source=cfg.init_weights)
        if cfg.sync_bn and self.world.distributed:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        # NHWC: the faster layout for cuDNN and oneDNN (a ResNet-20 step 16 % shorter on a 2-core CPU: RESULTS.md)
        self.channels_last = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in net.modules())
        net.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self._check_input_size(net, self.data.img_size)
        torch.manual_seed(cfg.seed + self.world.rank)  # dropout masks differ between ranks
        return net

    def _setup_optimisation(self) -> None:
        """Optimizer, per-iteration schedule, mixed precision and loss scaling (fp16 only), loss, monitors."""
        cfg = self.cfg
        self.optimizer = build_optimizer(cfg, self.net)
        # One optimizer step per `accumulate` batches. An epoch's last batches too few to fill a step are left
        # out (as the loader leaves out a short last batch): k batches of b then step exactly as batches of
        # k x b would, with the same number of steps per epoch and so the same schedule.
        self.steps_per_epoch = len(self.data.train) // cfg.accumulate
        if not self.steps_per_epoch:
            raise ConfigError(f"accumulate {cfg.accumulate} is more than the {len(self.data.train)} batches of an"
                              " epoch; lower accumulate or batch_size")
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.amp = amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.grad_flow = GradFlowMonitor(self.net) if cfg.grad_flow else None
        self.finite = FiniteWatch(self.device)
        # Polyak averaging of the weights (of the model itself, not its DDP or compiled wrapper)
        self.ema = WeightAverage(self.net, cfg.ema_decay) if cfg.ema_decay else None

    def _reset_position(self) -> None:
        """Position and history at the start of a run (what a checkpoint restores)."""
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken (each over `accumulate` batches)
        self.batch = 0  # batches of the current epoch already trained (mid-epoch checkpoints: whole steps only)
        self.tally = Tally()  # the current epoch's running sums
        self.history: list[dict] = []  # one metrics row per epoch
        self.grad_history: list[dict] = []  # one grad-flow row per epoch
        self.best_top1 = -1.0
        self.last_test: dict[str, float] | None = None
        self.signal: int | None = None  # set by the SIGINT/SIGTERM handler

    def _open_run(self, resume: str | Path | None) -> None:
        """A new run folder, or the resumed one with its checkpoint restored; only rank 0 writes."""
        world = self.world
        self.run_dir = Path(resume) if resume is not None else distributed.broadcast(
            _run_dir(self.cfg) if world.is_main else None, world)
        if resume is not None and not (self.run_dir / "last.ckpt").exists():  # killed before its first checkpoint
            if world.is_main:
                print(f"{self.run_dir} has no checkpoint yet (the run stopped before writing one):"
                      " starting it over in that folder", file=sys.stderr)
            resume = None
        if resume is not None:
            self._restore(load_checkpoint(self.run_dir / "last.ckpt"))
        if world.is_main:
            self._open_run_folder()
        self.log = RunLog(self.run_dir if world.is_main else None, self.cfg.tensorboard,
                          purge_step=self.step + 1 if resume is not None else None)

    def _parallel_model(self) -> nn.Module:
        """The model that trains: DDP across processes, then torch.compile."""
        model = self.net
        if self.world.distributed:
            has_gates = any(isinstance(m, StochasticDepth) and m.survival_prob < 1 for m in self.net.modules())
            model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=has_gates)  # a dropped block's parameters get no gradient that step
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    def _check_input_size(self, net: nn.Module, size: int) -> None:
        """One image through the model (eval, no grad: no RNG drawn); if it is too small, say the minimum."""
        try:
            with torch.no_grad():
                net.eval()(torch.zeros(1, self.data.in_chans, size, size, device=self.device))
        except RuntimeError:
            check_input_size(self.cfg.model, size)  # raises the clear message when the size is the cause
            raise

    def _open_run_folder(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.run_dir / "config.yaml", lambda f: f.write(to_yaml(self.cfg).encode()))
        if skipped := getattr(self.data, "skipped", None):
            # names as they are on disk, whatever their encoding
            listing = "".join(f"{path}\t{why}\n" for path, why in skipped).encode("utf-8", "surrogateescape")
            atomic_write(self.run_dir / "skipped.txt", lambda f: f.write(listing))
            print(f"skipped {len(skipped)} unreadable files, listed in {self.run_dir / 'skipped.txt'}")

    # ----------------------------------------------------------------- the loop

    def fit(self) -> Result:
        """Train from the current position to ``cfg.epochs`` (or ``stop_after`` epochs), evaluating as configured."""
        cfg = self.cfg
        start = self.epoch
        with self._signals():
            try:
                while self.epoch < cfg.epochs:
                    epoch = self.epoch
                    train = self.train_epoch(epoch)
                    last = epoch + 1 == cfg.epochs or (cfg.stop_after and epoch + 1 - start >= cfg.stop_after)
                    test = self.evaluate() if last or (epoch + 1) % cfg.eval_every == 0 else None
                    self.end_epoch(epoch, train, test)
                    if cfg.stop_after and self.epoch - start >= cfg.stop_after:
                        break
            except WriteError as e:  # a full disk: every file is whole, last.ckpt the previous one
                raise WriteError(f"{e}; after freeing space, continue with `cnnzoo train --resume {self.run_dir}`"
                                 ) from None
            finally:
                # however the run ends: pending curves drawn, TensorBoard flushed (quietly if already failing)
                with contextlib.suppress(WriteError) if sys.exc_info()[0] else contextlib.nullcontext():
                    self.log.close()
        test = self.last_test or {"top1": float("nan"), "top5": float("nan")}
        return Result(test["top1"], test["top5"], self.run_dir if self.world.is_main else None, self.epoch,
                      finished=self.epoch >= cfg.epochs)

    def train_epoch(self, epoch: int) -> Tally:
        """One pass over this process's shard of the training set (from ``self.batch`` when resuming mid-epoch),
        one optimizer step per ``accumulate`` batches.

        The host waits for the device only at log points (every ``log_every`` steps, checkpoints, the epoch's
        end): there the progress bar is updated and the non-finite watch and pending signals are checked.
        Checkpoints and signals fall between optimizer steps, never inside one.
        """
        cfg = self.cfg
        self.model.train()
        batches = self.steps_per_epoch * cfg.accumulate  # this epoch's batches (a too-short tail is left out)
        bar = tqdm(total=batches, initial=self.batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, disable=not (self.world.is_main and sys.stderr.isatty()))
        started = waiting = time.perf_counter()
        stream = self.data.train.epoch(epoch, start_batch=self.batch)
        for group in step_groups(stream, cfg.accumulate, (batches - self.batch) // cfg.accumulate):
            # data: the time this loop waited for the step's batches (reading, decoding, augmenting on the host)
            self.tally.data_seconds += time.perf_counter() - waiting
            self.train_step(group)
            bar.update(len(group))
            signum = self._pending_signal(sync=self.step % cfg.log_every == 0)
            every = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.batch < batches
            if signum or every or self.step % cfg.log_every == 0:  # a log point
                self.tally.seconds += time.perf_counter() - started
                started = time.perf_counter()
                self._check_finite(epoch)
                self._show_progress(bar)
            if signum or every:
                self.save()
            if signum:
                raise Interrupted(f"{signal.Signals(signum).name} at step {self.step} (epoch {epoch + 1});"
                                  f" checkpoint written: continue with --resume {self.run_dir}", signum)
            waiting = time.perf_counter()
        stream.close()  # the batches left out, never read
        bar.close()
        self.tally.seconds += time.perf_counter() - started
        self._check_finite(epoch)
        return self.tally

    def train_step(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        """One optimizer step over ``batches`` (images, labels): ``accumulate`` of them, one by default.
        Top to bottom; nothing here waits for the device."""
        cfg = self.cfg
        # lr: the per-iteration schedule already set this step's value in the optimizer
        # gradients: cleared once a step; each batch's backward below adds to them
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, (images, labels) in enumerate(batches):
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # gates: stochastic depth draws from the model's gate stream, seeded by (seed, batch number): the
            # same on every rank (DDP gradients agree), new for each batch of the step, again after a resume
            seed_gates(self.net, step_seed(cfg.seed, self.step * cfg.accumulate + i))
            # DDP: gradients are averaged over the processes only in the step's last backward
            with self._gradient_sync(last=i == len(batches) - 1):
                # forward, in mixed precision on CUDA
                with self._autocast():
                    outputs = self.model(images)
                    # loss: cross-entropy (label smoothing optional) + aux_weight x each auxiliary head's
                    loss, logits = classification_loss(outputs, labels, self.criterion, cfg.aux_weight)
                # backward (loss scaled for fp16): gradients add up over the batches, each loss / their number,
                # so the step follows the mean loss over all of them, as one batch of them all would
                self.scaler.scale(loss / len(batches)).backward()
            # metrics: running loss and top-1/top-5 of this epoch, summed on the device
            self.tally.add(loss, logits.detach(), labels)
            losses.append(loss.detach())
        if self.grad_flow:
            self.scaler.unscale_(self.optimizer)
            self.grad_flow.after_backward()
        # faults: a non-finite loss (the step's: the mean of its batches') or gradient is noted on the device;
        # checked at the next log point, and always before a checkpoint is written (fp16: the scaler itself
        # skips steps with inf gradients)
        loss = torch.stack(losses).mean()
        self.finite.record(self.step, loss, None if self.scaler.is_enabled() else grad_norm(self.net.parameters()))
        # step: the optimizer, then the schedule (per iteration)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.batch += len(batches)
        # average: the moving average of the weights takes a step towards the new ones (ema_decay)
        if self.ema:
            self.ema.update(self.net)

    def _gradient_sync(self, last: bool):
        """Under DDP, the gradients of all but a step's last batch stay local (``no_sync``): one all-reduce a step."""
        if self.world.distributed and not last:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _show_progress(self, bar) -> None:
        if not bar.disable:
            tally = self.tally.percentages()
            bar.set_postfix(loss=f"{tally['loss']:.3f}", img_s=f"{self.tally.images_per_s():.0f}",
                            data=f"{self.tally.data_wait_pct():.0f}%")

    def evaluate(self) -> dict[str, float]:
        """Test loss, top-1 and top-5 % of the weights and, when averaging, of the averaged ones (``ema_`` keys)."""
        test = evaluate(self.net, self.data.test, self._autocast, self.channels_last, self.world)
        if self.ema:
            averaged = evaluate(self.ema.model, self.data.test, self._autocast, self.channels_last, self.world)
            test.update({f"ema_{k}": v for k, v in averaged.items()})
        return test

    def end_epoch(self, epoch: int, train: Tally, test: dict[str, float] | None) -> None:
        """Record the epoch's row, keep the best weights, checkpoint, then rewrite metrics.csv and curves.png."""
        device = self.device
        train = reduce_tally(train, lambda t: distributed.all_reduce(t.to(device), self.world).cpu())
        train_pct = train.percentages()
        row = {"epoch": epoch + 1, "lr": self.epoch_lr, "train_loss": train_pct["loss"],
               "train_top1": train_pct["top1"], "test_loss": None, "test_top1": None, "test_top5": None,
               "epoch_seconds": train.seconds, "images_per_s": train.images_per_s(),
               "data_wait_pct": train.data_wait_pct()}
        if self.ema:  # columns of their own, only in runs that average
            row.update(ema_test_loss=None, ema_test_top1=None, ema_test_top5=None)
        if test is not None:
            row.update(test_loss=test["loss"], test_top1=test["top1"], test_top5=test["top5"])
            if self.ema:
                row.update(ema_test_loss=test["ema_loss"], ema_test_top1=test["ema_top1"],
                           ema_test_top5=test["ema_top5"])
            self.last_test = test
        self.history.append(row)
        if self.grad_flow:
            self.grad_history.append({"epoch": epoch + 1, **self.grad_flow.end_epoch()})
        self.epoch, self.batch, self.tally = epoch + 1, 0, Tally()
        if test is not None and test["top1"] > self.best_top1:
            self.best_top1 = test["top1"]
            if self.world.is_main:
                save_weights(self.run_dir / "best.safetensors", self.net,
                             {**self.meta, "epoch": epoch + 1, "top1": test["top1"], "top5": test["top5"]})
        if test is not None and self.ema and self.world.is_main:  # the averaged weights as last evaluated
            save_weights(self.run_dir / "ema.safetensors", self.ema.model,
                         {**self.meta, "epoch": epoch + 1, "top1": test["ema_top1"], "top5": test["ema_top5"],
                          "ema_decay": self.cfg.ema_decay})
        self.save()
        if self.world.is_main:
            self.log.write(self.history, self.step)
            if self.grad_history:
                write_grad_flow(self.run_dir, self.grad_history)
                self.log.scalars({f"grad_flow/{k}": v for k, v in self.grad_history[-1].items() if k != "epoch"},
                                 self.step)
            test_text = f"  test {test['top1']:.2f}% / {test['top5']:.2f}%" if test else ""
            if test and self.ema:
                test_text += f"  ema {test['ema_top1']:.2f}%"
            tqdm.write(f"epoch {epoch + 1}/{self.cfg.epochs}  loss {row['train_loss']:.4f}  train"
                       f" {row['train_top1']:.2f}%{test_text}  lr {row['lr']:.4g}  {train.seconds:.1f} s"
                       f"  {row['images_per_s']:.0f} img/s  data {row['data_wait_pct']:.0f}%")
            if row["data_wait_pct"] >= DATA_BOUND:
                tqdm.write(f"the model waited for data {row['data_wait_pct']:.0f}% of epoch {epoch + 1}'s time "
                           f"(data_wait_pct in metrics.csv): an image folder read from disk is fed faster by more "
                           f"decoding processes (workers, now {self.cfg.workers}) or images stored nearer img_size "
                           f"({self.data.img_size})", file=sys.stderr)
            # checked once, after the second epoch (the first may still be warming up)
            if epoch + 1 == min(2, self.cfg.epochs) and learnt_nothing(row["train_loss"], row["train_top1"],
                                                                        self.data.num_classes):
                self._say_learnt_nothing(row)

    def _say_learnt_nothing(self, row: dict) -> None:
        cfg, uniform = self.cfg, math.log(self.data.num_classes)
        # over twice a uniform guess's loss: the steps overshoot (at chance, GoogLeNet's loss with its two
        # auxiliary heads at weight 0.3 is 1.6 ln C)
        if row["train_loss"] > 2 * uniform:
            advice = f"its loss is far above a uniform guess's, so the learning rate {cfg.lr:g} is likely too high"
        else:  # stuck at the guess: a plateau, or steps too small to leave it
            advice = f"it is stuck at a uniform guess: another learning rate than {cfg.lr:g} or more epochs may move it"
        recipes = "".join(f"; its recipe: --config {name}" for name in recipes_of(cfg.model))
        tqdm.write(f"after epoch {row['epoch']}, {cfg.model} has learnt nothing (train loss {row['train_loss']:.3g}, "
                   f"a uniform guess's ln {self.data.num_classes} = {uniform:.3g}; train top-1 "
                   f"{row['train_top1']:.1f}%): {advice}{recipes}", file=sys.stderr)

    @property
    def epoch_lr(self) -> float:
        """The learning rate at the epoch's first step (warmup and schedules change it within the epoch)."""
        first = self.step - self.steps_per_epoch
        return self.cfg.lr * self.scheduler.lr_lambdas[0](max(first, 0))

    # ----------------------------------------------------------------- checkpoints and faults

    def save(self) -> None:
        """Write last.ckpt atomically (collective under DDP: every rank's RNG state goes in).

        Never with a non-finite weight: the watch is checked first, then every tensor of the model's state.
        """
        self._check_finite(self.epoch if self.batch else self.epoch - 1)
        model_state = self.net.state_dict()
        ema_state = self.ema.state_dict() if self.ema else {}
        everything = {**model_state, **{f"ema:{k}": v for k, v in ema_state.items()}}  # and the average's
        if bad := nonfinite_entries(everything):  # every rank: DDP keeps their weights equal, so all stop
            raise NumericalError(f"the weights hold NaN or Inf ({', '.join(bad[:5])}) at step {self.step}"
                                 f" (epoch {self.epoch + (1 if self.batch else 0)}); {self._last_good()}")
        rngs = distributed.gather_objects(rng_state(self.net), self.world)
        if not self.world.is_main:
            return
        state = {
            "model": model_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": ema_state or None,
            "epoch": self.epoch, "step": self.step, "batch": self.batch,
            "tally": self.tally.to_dict(),
            "history": self.history, "grad_history": self.grad_history,
            "grad_flow": self.grad_flow.state_dict() if self.grad_flow else None,
            "best_top1": self.best_top1, "last_test": self.last_test,
            "rng": rngs, "world_size": self.world.size,
            "config": dataclasses.asdict(self.cfg), "meta": self.meta,
        }
        save_checkpoint(self.run_dir / "last.ckpt", state)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        load_weights(self.net, ckpt["model"], source=str(self.run_dir / "last.ckpt"))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        # The schedule's settings come from the config (which may extend the epochs), not the file.
        self.scheduler.load_state_dict({**ckpt["scheduler"], "lr_lambdas": [None]})
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema:  # a checkpoint without an average (ema_decay set on resuming) starts it at its weights
            self.ema.load_state_dict(ckpt.get("ema") or self.net.state_dict())
        self.epoch, self.step, self.batch = ckpt["epoch"], ckpt["step"], ckpt["batch"]
        self.tally = Tally(**ckpt["tally"])  # data_seconds: absent from older checkpoints, 0 then
        self.history, self.grad_history = ckpt["history"], ckpt["grad_history"]
        if self.grad_flow and ckpt["grad_flow"]:
            self.grad_flow.load_state_dict(ckpt["grad_flow"])
        self.best_top1, self.last_test = ckpt["best_top1"], ckpt["last_test"]
        rngs = ckpt["rng"]
        set_rng_state(rngs[self.world.rank] if len(rngs) == self.world.size else rngs[0], self.net)

    def _last_good(self) -> str:
        last = self.run_dir / "last.ckpt"
        return (f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet") + \
            ". Lower the learning rate, or check the data for NaNs"

    def _check_finite(self, epoch: int) -> None:
        """Raise NumericalError if any step since the run (re)started had a non-finite loss or gradient.

        A log point: reads the device. Under DDP the processes agree, so every one of them stops.
        """
        first = self.finite.first_bad()
        if self.world.distributed:
            anywhere = distributed.all_reduce(self.finite.flag(), self.world, op="max").item()
            if anywhere and first is None:
                raise NumericalError(f"another process's loss is not finite (epoch {epoch + 1}); {self._last_good()}")
        if first is None:
            return
        step, loss, norm = first
        k = self.cfg.accumulate
        batch = self.batch - (self.step - step) * k + 1  # the step's first batch, 1-based, within this epoch
        batches = f"batch {batch}" if k == 1 else f"batches {batch}-{batch + k - 1}"
        what = f"loss is {loss}" if not math.isfinite(loss) else f"the gradients are not finite (norm {norm})"
        raise NumericalError(f"{what} at step {step} (epoch {epoch + 1}, {batches}); {self._last_good()}")

    def _pending_signal(self, sync: bool) -> int:
        """A SIGINT/SIGTERM that arrived (0: none). Under DDP the processes agree on it at log points only
        (``sync``), so that every one stops at the same step without a collective on every step."""
        signum = self.signal or 0
        if self.world.distributed:
            if not sync:
                return 0
            flag = torch.tensor([signum], dtype=torch.float32, device=self.device)
            signum = int(distributed.all_reduce(flag, self.world, op="max").item())
        return signum

    @contextlib.contextmanager
    def _signals(self):
        """Turn SIGINT/SIGTERM into a checkpoint at the next step; a second signal kills at once (the default)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum, frame):
            self.signal = signum
            signal.signal(signum, signal.SIG_DFL)

        old = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)


def train(cfg: TrainConfig, data=None, resume: str | Path | None = None) -> Result:
    """Train as ``cfg`` says (``data``: a ready cnnzoo.data.Data, else built from ``cfg.data``); see ``Trainer``."""
    try:
        result = Trainer(cfg, data, resume).fit()
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown(clean=True)
    return result


def resume_config(run_dir: str | Path, *overrides: dict[str, Any]) -> TrainConfig:
    """The config of the run in ``run_dir`` (its config.yaml), with ``overrides`` applied (e.g. more epochs)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():  # without last.ckpt it starts over (killed before the first one)
        raise ConfigError(f"cannot resume {run_dir}: no config.yaml there (give a run folder made by cnnzoo train)")
    return load_config(run_dir / "config.yaml", *overrides)


def load_trained(path: str | Path, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A trained model from a run folder (its last.ckpt), a ``.ckpt`` or a ``.safetensors`` file, and its meta."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.ckpt"
    state, meta = load_file(path)
    if "model" not in meta and model is None:
        raise CheckpointError(f"{path} does not say which model it holds; give --model NAME")
    name = model or meta["model"]
    net = registry.create_model(name, num_classes=meta.get("num_classes"), in_chans=meta.get("in_chans"),
                                **(meta.get("model_kwargs", {}) if name == meta.get("model") else {}))
    return load_weights(net, state, source=str(path)), {**meta, "model": name}


def evaluate_checkpoint(path: str | Path, data_spec: str | None = None, crops: str = "center",
                        batch_size: int = 256, device: str = "auto", model: str | None = None,
                        data=None) -> dict[str, float]:
    """Test loss, top-1 and top-5 % of a trained model on the test split of ``data_spec`` (default: the data
    it was trained on), or of a ready ``data`` object (``cnnzoo eval``)."""
    dev = resolve_device(device)
    net, meta = load_trained(path, model)
    data_spec = data_spec or meta.get("data")
    if data is None:
        if not data_spec:
            raise ConfigError(f"{path} does not record its data set; give --data SPEC")
        data = build_data(data_spec, batch_size=batch_size, img_size=meta.get("img_size"), augment="none",
                     eval_crops=crops, mean=tuple(meta["mean"]) if "mean" in meta else None,
                     std=tuple(meta["std"]) if "std" in meta else None, device=dev)
    if data.num_classes != net.get_classifier().out_features:
        raise ConfigError(f"{path} classifies {net.get_classifier().out_features} classes but {data_spec!r} has"
                          f" {data.num_classes}")
    return evaluate(net.to(dev), data.test)
