"""Speed and memory of a model's training or inference step (``cnnzoo bench``).

A step is one batch: inference is a forward pass under ``torch.inference_mode``;
training is forward, cross-entropy on the main logits, backward and an SGD
(momentum) update. After warm-up steps (which also absorb ``torch.compile``'s
compilation), the median of the timed steps gives the step time. Achieved
GFLOP/s counts 2 FLOPs per MAC, and a training step as 3 forward passes
(the backward pass costs about twice the forward).

Peak memory is CUDA's max allocated bytes during the timed steps, or on the
CPU the process's peak resident set size (a high-water mark of the whole
process, so it is meaningful for one benchmark per process, as the CLI runs it).

CSV and JSON results are timm ``benchmark.py``'s rows, names, units and rounding
(``model, infer_samples_per_sec, infer_step_time`` in ms, ``infer_batch_size,
infer_img_size, infer_gmacs``, or the ``train_`` columns, then ``param_count`` in
millions), followed by cnnzoo's own columns, so they paste beside timm's.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..registry import create_model
from .complexity import count_macs, count_params, example_input
from .report import Column, decimal, integer, render

MODES = ("infer", "train")


@dataclass
class BenchResult:
    model: str
    samples_per_sec: float  # images per second (batch_size / median step time)
    step_time: float  # median step, milliseconds
    batch_size: int
    img_size: int
    param_count: int
    gmacs: float  # forward MACs per image, 1e9
    mode: str  # "infer" or "train"
    peak_mem_mb: float  # CUDA max allocated, or the process's peak RSS on CPU
    gflops: float  # achieved: 2 x MACs x batch (x3 in training) / step time
    device: str
    channels_last: bool
    amp: bool
    compile: bool
    threads: int  # torch.get_num_threads() (CPU)
    torch: str  # torch version


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _main_output(out):
    """The main logits of a model that also returns auxiliary ones (a tuple or a named tuple)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def make_step(model: nn.Module, x: torch.Tensor, mode: str = "infer", amp: bool = False) -> Callable[[], None]:
    """A function that runs one ``mode`` step of ``model`` on the batch ``x`` (and waits for the device)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    device = x.device
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    if mode == "infer":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast():
                model(x)
            _sync(device)

        return step

    model.train()
    target = torch.randint(0, 2, (x.shape[0],), device=device)  # any labels: only the cost matters
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        with autocast():
            loss = F.cross_entropy(_main_output(model(x)).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)

    return step


def time_steps(step: Callable[[], None], steps: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``: wall clock, or ``time.process_time`` (CPU time of
    the process, all threads), which other processes' load disturbs far less on a shared machine."""
    times = []
    for _ in range(steps):
        start = clock()
        step()
        times.append(clock() - start)
    return times


def _best_rate(op: Callable[[], object], flops: float, steps: int, device: torch.device,
               clock: Callable[[], float]) -> float:
    def step() -> None:
        op()
        _sync(device)

    step()
    return flops / min(time_steps(step, steps, clock)) / 1e9


def matmul_gflops(n: int = 2048, steps: int = 10, device: str | torch.device = "cpu",
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """This machine's fp32 matrix-multiply rate, GFLOP/s: the best of ``steps`` n x n products, the ceiling
    that convolutions (matrix products underneath) can approach. Time it with the clock the models use."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return _best_rate(lambda: torch.mm(a, b), 2 * n**3, steps, device, clock)


def conv_gflops(steps: int = 5, device: str | torch.device = "cpu",
                clock: Callable[[], float] = time.perf_counter) -> float:
    """The fp32 rate of a large 3x3 convolution (8 x 256 x 56 x 56, 256 filters), GFLOP/s: what the
    conv library (oneDNN, cuDNN) reaches where BLAS's matmul does not (MKL's sgemm on AMD CPUs)."""
    device = torch.device(device)
    x, w = torch.randn(8, 256, 56, 56, device=device), torch.randn(256, 256, 3, 3, device=device)
    return _best_rate(lambda: F.conv2d(x, w, padding=1), 2 * 8 * 256 * 256 * 9 * 56 * 56, steps, device, clock)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def benchmark(
    model: nn.Module | str,
    mode: str = "infer",
    batch_size: int = 8,
    input_size: int | None = None,
    channels_last: bool = False,
    amp: bool = False,
    compile: bool = False,
    device: str | None = "auto",
    warmup: int = 3,
    steps: int = 10,
    name: str | None = None,
) -> BenchResult:
    """Time ``steps`` training or inference steps of ``model`` (a registered name or a module) after ``warmup``."""
    if batch_size < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, steps >= 1, warmup >= 0; got {batch_size}, {steps}, {warmup}")
    device = resolve_device(device)
    if isinstance(model, str):
        name, model = model, create_model(model)
    name = name or type(model).__name__
    model = model.to(device)
    x = example_input(model, input_size, batch_size).normal_()
    img_size = x.shape[-1]
    params, macs = count_params(model), count_macs(model, tuple(x.shape[1:]))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run = torch.compile(model) if compile else model
    step = make_step(run, x, mode, amp)
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_time = statistics.median(time_steps(step, steps))
    flops = 2 * macs * batch_size * (3 if mode == "train" else 1)
    return BenchResult(
        model=name, samples_per_sec=batch_size / step_time, step_time=1000 * step_time, batch_size=batch_size,
        img_size=img_size, param_count=params, gmacs=macs / 1e9, mode=mode, peak_mem_mb=_peak_memory_mb(device),
        gflops=flops / step_time / 1e9, device=str(device), channels_last=channels_last, amp=amp,
        compile=compile, threads=torch.get_num_threads(), torch=torch.__version__.split("+")[0],
    )


BENCH_COLUMNS = [  # the text table
    Column("model", "model", left=True),
    Column("samples_per_sec", "img/s", decimal(2)),
    Column("step_time", "step ms", decimal(1)),
    Column("batch_size", "batch"),
    Column("img_size", "size"),
    Column("param_count", "params", integer),
    Column("gmacs", "GMACs", decimal(3)),
    Column("mode", "mode", left=True),
    Column("peak_mem_mb", "peak MB", decimal(0)),
    Column("gflops", "GFLOP/s", decimal(1)),
    Column("device", "device", left=True),
    Column("channels_last", "channels_last"),
    Column("amp", "amp"),
    Column("compile", "compile"),
    Column("threads", "threads"),
    Column("torch", "torch", left=True),
]


# timm's benchmark.py: each measure prefixed by its bench mode, param_count last (millions); it profiles MACs in
# inference only. cnnzoo's own measures follow.
_TIMM_MEASURES = ("samples_per_sec", "step_time", "batch_size", "img_size", "gmacs")
TIMM_COLUMNS = ["model", *(f"{mode}_{m}" for mode in MODES for m in _TIMM_MEASURES if (mode, m) != ("train", "gmacs")),
                "param_count"]
EXTRA_COLUMNS = ["peak_mem_mb", "gflops", "device", "channels_last", "amp", "compile", "threads", "torch"]


def timm_row(r: BenchResult) -> dict:
    """``r`` as a row of timm's benchmark.py: its column names, units and rounding, then cnnzoo's columns."""
    row = {
        "model": r.model,
        f"{r.mode}_samples_per_sec": round(r.samples_per_sec, 2),
        f"{r.mode}_step_time": round(r.step_time, 3),  # ms
        f"{r.mode}_batch_size": r.batch_size,
        f"{r.mode}_img_size": r.img_size,
    }
    if r.mode == "infer":
        row["infer_gmacs"] = round(r.gmacs, 2)
    row["param_count"] = round(r.param_count / 1e6, 2)  # millions
    return row | {key: getattr(r, key) for key in EXTRA_COLUMNS}


def format_results(results: list[BenchResult], fmt: str = "text") -> str:
    """Results as a table: text or markdown with cnnzoo's headings; CSV and JSON as timm's rows (``timm_row``)."""
    if fmt not in ("csv", "json"):
        return render(BENCH_COLUMNS, [asdict(r) for r in results], fmt)
    rows = [timm_row(r) for r in results]
    keys = [k for k in TIMM_COLUMNS + EXTRA_COLUMNS if any(k in row for row in rows)]
    return render([Column(k, k) for k in keys], rows, fmt)
