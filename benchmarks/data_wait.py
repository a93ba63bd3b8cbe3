"""Does the model wait on data? The trainer's data wait on the worker path, by the number of workers.

One split of CIFAR-10 read from its JPEG files by DataLoader workers (the path of folders too large for
memory, forced here with ``build_data(..., in_memory=False)``) trains a model small enough for the data to
matter (LeNet-5 by default) for one epoch, once per ``--workers`` value. Printed per run: the epoch's seconds,
images/s, and the share of its time the training loop waited for batches (``data_wait_pct`` of metrics.csv;
from 25 % the trainer says so on stderr).

    PYTHONPATH=src python benchmarks/data_wait.py --root /path/to/cifar10      # its test/ split, workers 0 and 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cnnzoo.data import build_data
from cnnzoo.engine import load_config, train
from cnnzoo.engine.metrics import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="CIFAR-10 as JPEG folders (ROOT/train, ROOT/test)")
    parser.add_argument("--split", default="test", help="the split trained on (test: 10,000 images)")
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts, one run each")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        for split in ("train", "val"):  # the one split serves as both: only the training epoch is measured
            (folder / split).symlink_to((args.root / args.split).resolve())
        print(f"| workers | epoch s | img/s | data wait |\n|--:|--:|--:|--:|")
        for workers in (int(w) for w in args.workers.split(",")):
            data = build_data(f"folder:{folder}", batch_size=args.batch_size, in_memory=False, workers=workers)
            cfg = load_config(None, {"model": args.model, "data": f"folder:{folder}", "epochs": 1, "lr": 0.01,
                                     "batch_size": args.batch_size, "workers": workers, "out": tmp,
                                     "name": f"workers{workers}", "tensorboard": False})
            train(cfg, data=data)
            (row,) = read_metrics(Path(tmp) / f"workers{workers}" / "metrics.csv")
            print(f"| {workers} | {row['epoch_seconds']:.1f} | {row['images_per_s']:.0f} | "
                  f"{row['data_wait_pct']:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
