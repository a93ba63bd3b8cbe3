"""Why cnnzoo trains in channels_last (NHWC) by default: training-step time in NHWC over NCHW, side by side.

The same model (same weights) takes a forward + backward + SGD step in each layout in turn, after a warm-up;
the ratio of median step times is printed per model. Below 1.0, NHWC is faster on this machine.

    python benchmarks/memory_format.py                       # the trainer's default model and a few others
    python benchmarks/memory_format.py --models resnet20:32:128 --steps 20
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import cnnzoo
from stochastic_depth import measure, train_step

# name:input side:batch
DEFAULT = "resnet20:32:128,resnet110:32:128,lenet5:32:128,resnet50:224:8,densenet121:224:8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT, help="comma-separated name:side:batch")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per layout")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | input | batch | NCHW step ms | NHWC step ms | NHWC / NCHW |")
    print("|---|--:|--:|--:|--:|--:|")
    for spec in args.models.split(","):
        name, side, batch = spec.split(":")
        torch.manual_seed(0)
        model = cnnzoo.create_model(name)
        x = torch.randn(int(batch), model.default_cfg.in_chans, int(side), int(side))
        y = torch.randint(0, model.default_cfg.num_classes, (int(batch),))
        times = measure({"nchw": train_step(model, x, y),
                         "nhwc": train_step(copy.deepcopy(model), x, y, torch.channels_last)}, args.steps)
        nchw, nhwc = (statistics.median(times[k]) for k in ("nchw", "nhwc"))
        print(f"| {name} | {side} | {batch} | {nchw * 1e3:.1f} | {nhwc * 1e3:.1f} | {nhwc / nchw:.3f} |", flush=True)


if __name__ == "__main__":
    main()
