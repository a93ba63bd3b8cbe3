"""Inference speed of every registered model, for the README's model table (benchmarks/results/speed.csv).

Each model runs at its paper's input size with random weights: warm-up, then
the median of the timed batches (``cnnzoo.analysis.bench.benchmark``). Rows of
the models measured replace their old rows; other rows stay, so families can
be measured one at a time. Then regenerate the table: ``cnnzoo table --write README.md``.

    PYTHONPATH=src python benchmarks/speeds.py                       # every model
    PYTHONPATH=src python benchmarks/speeds.py 'resnet*' --threads 1 --steps 3
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

import cnnzoo
from cnnzoo.analysis.bench import EXTRA_COLUMNS, TIMM_COLUMNS, benchmark, timm_row
from cnnzoo.analysis.table import SPEEDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern of model names")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=SPEEDS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = {}
    if args.out.exists():
        with args.out.open(newline="") as f:
            rows = {row["model"]: row for row in csv.DictReader(f)}
    for name in cnnzoo.list_models(args.pattern):
        result = benchmark(name, "infer", args.batch_size, device="cpu", warmup=args.warmup, steps=args.steps)
        rows[name] = timm_row(result)
        print(f"{name:<28} {result.samples_per_sec:9.2f} img/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        columns = [k for k in TIMM_COLUMNS + EXTRA_COLUMNS if any(k in row for row in rows.values())]
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[name] for name in sorted(rows))
    print(f"{len(rows)} rows in {args.out}; now run `cnnzoo table --write README.md`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
