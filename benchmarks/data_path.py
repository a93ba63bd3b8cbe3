"""Images/s of the data path alone: cnnzoo's in-memory CIFAR-10 pipeline against torchvision's ImageFolder.

Both deliver the same thing: shuffled batches of normalised float32 32x32 images with the ResNet paper's
augmentation (zero-pad 4, random 32 crop, horizontal flip), from the CIFAR-10 JPEG folders. The baseline is
``ImageFolder`` + ``DataLoader(num_workers=2)`` + the same transforms (v2); cnnzoo decodes every JPEG once
(cached on disk) and augments whole batches as tensor ops. No model runs. Rounds alternate between the two
so machine noise hits both alike; the ratio of medians is the figure.

    python benchmarks/data_path.py                     # unpacks ../shared/data/cifar10-jpeg.tar.gz to a temp dir
    python benchmarks/data_path.py --root DIR/cifar10  # an unpacked copy
"""

from __future__ import annotations

import argparse
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from cnnzoo.data import build_data

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def images_per_second(batches, limit: int) -> float:
    """Steady-state rate over ``limit`` batches, the clock started after the first (worker start-up excluded)."""
    it = iter(batches)
    next(it)
    count, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(it):
        count += len(x)
        if i + 1 >= limit:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="unpacked cifar10/ folder with train/ and test/")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=60, help="batches timed per round and pipeline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads in this process (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    temp = None
    if args.root is None:
        temp = tempfile.TemporaryDirectory()
        start = time.perf_counter()
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(temp.name, filter="data")
        args.root = Path(temp.name) / "cifar10"
        print(f"unpacked {ARCHIVE.name} in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    data = build_data(f"folder:{args.root}", batch_size=args.batch_size, augment="cifar", workers=2)
    print(f"cnnzoo build_data (decode {data.train.num_items + data.test.num_items} JPEGs once, or read the cache):"
          f" {time.perf_counter() - start:.1f} s")
    baseline = ImageFolder(str(args.root / "train"), transform=v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.mean, data.std)]))
    loader = DataLoader(baseline, batch_size=args.batch_size, shuffle=True, num_workers=2, drop_last=True)

    ours, theirs = [], []
    for r in range(args.rounds):
        theirs.append(images_per_second(loader, args.batches))
        ours.append(images_per_second(data.train.epoch(r), args.batches))
        print(f"round {r}: torchvision ImageFolder+DataLoader(2 workers) {theirs[-1]:8.0f} img/s   "
              f"cnnzoo in-memory {ours[-1]:8.0f} img/s   ratio {ours[-1] / theirs[-1]:.1f}x")
    print(f"median: torchvision {statistics.median(theirs):.0f} img/s, cnnzoo {statistics.median(ours):.0f} img/s, "
          f"ratio {statistics.median(ours) / statistics.median(theirs):.1f}x  "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size})")
    if temp:
        temp.cleanup()


if __name__ == "__main__":
    main()
