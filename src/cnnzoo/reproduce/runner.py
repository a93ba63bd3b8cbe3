"""Run an experiment's arms and write its report folder.

``run(name, scale, data, out)`` trains every arm for every seed of the scale
into ``OUT/runs/ARM-seedS`` (a finished run is kept, an interrupted one
resumes from its checkpoint, a run killed before its first checkpoint starts
over), then writes, from the run folders alone:

- ``report.md``: the claim, the paper's figures and ours side by side, the
  verdict, the scale and what it reduces, the command, seeds, machine, time;
- ``curves.png`` (test error of every arm against epoch), ``bars.png``
  (paper vs measured), ``grad_flow.png`` where the arms logged gradients;
- ``metrics-ARM-seedS.csv`` per run and ``results.json`` for scripts.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import build_data
from ..registry import create_model
from ..data.loaders import TensorLoader
from ..engine import load_config, train
from ..engine.checkpoint import save_weights
from ..engine.config import ConfigError
from ..engine.metrics import read_metrics
from .experiments import EXPERIMENTS, OVERVIEW, Experiment, Scale
from .report import overview_report, write_report

SCALES = ("smoke", "cpu", "paper")


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; `cnnzoo reproduce --list` shows: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def subset(loader: TensorLoader, n: int | None, seed: int) -> TensorLoader:
    """A fixed random ``n`` of an in-memory split (the same for every arm), or the loader itself."""
    if n is None or n >= loader.num_items:
        return loader
    if not isinstance(loader, TensorLoader):
        raise ConfigError("this scale takes a subset of the images, which needs a data set that fits in memory "
                          "(CIFAR-10, a small folder); give --scale paper for a larger one")
    keep = torch.randperm(loader.num_items, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    keep = keep.to(loader.images.device)
    return TensorLoader(loader.images.index_select(0, keep), loader.labels.index_select(0, keep),
                        batch_size=loader.batch_size, train=loader.train, augment=loader.augment,
                        device=loader.device, seed=loader.seed, rank=loader.rank, world_size=loader.world_size)


def _finished(run_dir: Path, epochs: int) -> bool:
    metrics = run_dir / "metrics.csv"
    return metrics.is_file() and any(row["epoch"] == epochs for row in read_metrics(metrics))


def _insert(exp: Experiment, arm: dict[str, Any], runs: Path, seed: int, out: Path) -> str:
    """Weights for an arm that starts by insertion from another arm's trained (shallower) net."""
    from ..engine.trainer import load_trained
    from ..engine.insertion import insert_init

    shallow, meta = load_trained(runs / f"{_slug(arm['insert_from'])}-seed{seed}")
    deep = create_model(arm["model"], num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    path = out / f"insertion-init-seed{seed}.safetensors"
    save_weights(path, insert_init(shallow, deep), {"model": arm["model"]})
    return str(path)


def _slug(arm: str) -> str:
    return arm.replace(" ", "-").replace("/", "-")


def run(name: str, scale: str = "smoke", data: str | None = None, out: str | Path | None = None,
        command: str = "", say: Callable[[str], None] = print) -> Path:
    """Train every arm of experiment ``name`` at ``scale`` (resuming what is done) and write the report folder."""
    exp = get(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    sc = exp.scales[scale]
    out = Path(out) if out is not None else Path("reproductions") / (name if scale == "cpu" else f"{name}-{scale}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if exp is OVERVIEW:
        overview_report(out, command)
        return out
    spec = data or sc.data
    if spec is None:
        raise ConfigError(f"the {scale} scale of {name} trains on CIFAR-10: give --data cifar10:DIR or "
                          f"folder:PATH (e.g. the CIFAR-10 JPEG folders)")
    runs = out / "runs"
    results: dict[str, list[dict[str, Any]]] = {}
    for seed in sc.seeds:
        loaded = None
        for arm, values in exp.arms.items():
            overrides = {**sc.overrides, **values, **sc.arm_overrides.get(arm, {}), "data": spec, "seed": seed,
                         "out": str(runs), "name": f"{_slug(arm)}-seed{seed}"}
            insert_from = overrides.pop("insert_from", None)
            if insert_from is not None:
                overrides["init_weights"] = _insert(exp, {**values, **overrides, "insert_from": insert_from},
                                                    runs, seed, out)
            cfg = load_config(None, overrides)
            run_dir = runs / overrides["name"]
            if not _finished(run_dir, cfg.epochs):
                if loaded is None and (sc.train_images or sc.test_images):
                    # one reduced data set per seed, shared by the arms (same subset, same order); the full sets
                    # are built by the trainer itself, sharded across DDP processes
                    loaded = build_data(spec, batch_size=cfg.batch_size, img_size=cfg.img_size, augment=cfg.augment,
                                        seed=seed, workers=cfg.workers)
                    loaded.train = subset(loaded.train, sc.train_images, seed)
                    loaded.test = subset(loaded.test, sc.test_images, seed + 1)
                resume = run_dir if (run_dir / "last.ckpt").is_file() else None
                if resume is None and run_dir.exists():
                    shutil.rmtree(run_dir)  # killed before its first checkpoint: start it over
                say(f"{name}: {arm} (seed {seed}){', resuming' if resume else ''}")
                train(cfg, data=loaded, resume=resume)
            if _is_main():  # under torchrun, process 0 writes the run folders and the report
                results.setdefault(arm, []).append(_measure(run_dir, seed))
                shutil.copyfile(run_dir / "metrics.csv", out / f"metrics-{overrides['name']}.csv")
    if not _is_main():
        return out
    write_report(out, exp, scale, sc, results, command or _command(name, scale, data, out), _machine(),
                 time.monotonic() - started)
    return out


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _measure(run_dir: Path, seed: int) -> dict[str, Any]:
    rows = read_metrics(run_dir / "metrics.csv")
    tested = [r for r in rows if r.get("test_top1") is not None]
    return {
        "seed": seed,
        "run": str(run_dir),
        "test_error": 100.0 - tested[-1]["test_top1"],
        "best_test_error": 100.0 - max(r["test_top1"] for r in tested),
        "train_seconds": sum(r["epoch_seconds"] or 0.0 for r in rows),
        "epoch_seconds": [r["epoch_seconds"] or 0.0 for r in rows],
        "epochs": [int(r["epoch"]) for r in tested],
        "test_errors": [100.0 - r["test_top1"] for r in tested],
        "grad_flow": str(run_dir / "grad_flow.csv") if (run_dir / "grad_flow.csv").is_file() else None,
    }


def _command(name: str, scale: str, data: str | None, out: Path) -> str:
    return f"cnnzoo reproduce {name} --scale {scale}" + (f" --data {data}" if data else "") + f" --out {out}"


def _machine() -> str:
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({threads} threads)"
    return f"{platform.machine()} {device}, Python {sys.version.split()[0]}, torch {torch.__version__}"


def describe() -> list[str]:
    """``cnnzoo reproduce --list``: each experiment, its claim, its figure and the cost of each scale."""
    lines = []
    for exp in EXPERIMENTS.values():
        lines += [f"{exp.name}: {exp.claim}", f"    source: {exp.paper}; {exp.figure}"]
        lines += [f"    {s}: {sc.cost}; {sc.reduced}" for s, sc in exp.scales.items()]
    return lines
