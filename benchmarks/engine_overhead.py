"""Engine overhead: one epoch of ResNet-20 through `cnnzoo.engine.train` against a bare PyTorch loop.

Both sides train the same model (same seed), with the same optimizer settings and batch size, over the same
in-memory tensors, and then score the same test split; they run alternately in one process so that load on
the machine hits both alike. The engine's side includes everything a run does: building the run folder,
config.yaml, TensorBoard events, the test pass, best.safetensors, last.ckpt (fsync'ed), metrics.csv and
curves.png. Target: engine / bare <= 1.05.

    PYTHONPATH=src python benchmarks/engine_overhead.py [--images 50000] [--repeats 3] [--threads N]

Data: CIFAR-10-shaped random tensors (3 x 32 x 32, 10 classes) served by the in-memory stand-in loader of
tests/standin_data.py (the data branch's CIFAR loader replaces it once merged): a training step costs the
same whatever the pixel values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from standin_data import Data, TensorLoader  # noqa: E402

import cnnzoo  # noqa: E402
from cnnzoo.engine import load_config, train  # noqa: E402


def cifar_shaped(images: int, test_images: int, batch_size: int) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images + test_images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (images + test_images,), generator=g)
    return Data(TensorLoader(x[:images], y[:images], batch_size), TensorLoader(x[images:], y[images:], 256, False),
                10, 3, 32)


def bare(data: Data, lr: float) -> None:
    """The loop anyone would write: the same model, SGD settings and batches, then a test pass."""
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    for images, labels in data.train.epoch(0):
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in data.test.epoch(0))
    assert correct >= 0


def engine(data: Data, lr: float, batch_size: int, out: str) -> None:
    cfg = load_config(None, {"model": "resnet20", "epochs": 1, "batch_size": batch_size, "lr": lr, "out": out,
                             "device": "cpu"})
    train(cfg, data=data)


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is what the other jobs on a shared machine blur least."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="training images per epoch (CIFAR-10: 50,000)")
    parser.add_argument("--test-images", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="alternating engine/bare pairs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = cifar_shaped(args.images, args.test_images, args.batch_size)
    times: dict[str, list[tuple[float, float]]] = {"engine": [], "bare": []}
    with tempfile.TemporaryDirectory() as out:
        engine(cifar_shaped(256, 64, args.batch_size), 0.1, args.batch_size, out)  # warm-up: imports, allocator
        for i in range(args.repeats):
            for name in (("engine", "bare") if i % 2 == 0 else ("bare", "engine")):
                run = (engine, data, 0.1, args.batch_size, out) if name == "engine" else (bare, data, 0.1)
                times[name].append(timed(*run))
                print(f"  {name:<6} wall {times[name][-1][0]:8.2f} s  cpu {times[name][-1][1]:8.2f} s", file=sys.stderr)
    print(f"resnet20, {args.images} images/epoch + {args.test_images} test, batch {args.batch_size},"
          f" torch {torch.__version__}, {args.threads} threads, {args.repeats} alternating pairs")
    for k, clock in enumerate(("wall", "cpu")):
        engine_s, bare_s = ([t[k] for t in times[name]] for name in ("engine", "bare"))
        ratios = [e / b for e, b in zip(engine_s, bare_s)]
        print(f"{clock:<4}  engine median {statistics.median(engine_s):7.2f} s  bare median"
              f" {statistics.median(bare_s):7.2f} s  engine / bare median {statistics.median(ratios):.3f}"
              f"  (pairs: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
