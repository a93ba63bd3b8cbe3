"""`cnnzoo ...` in a real process, reading the stand-in data: for tests of signals, kills and torchrun.

    python tests/standin_train.py train --epochs 3 ...            (or under torchrun)

It also registers ``tiny_cnn`` (no BatchNorm, so DDP over ranks equals one process exactly) and
``resnet20_no_bn`` (ResNet-20 with its BatchNorms removed, for stochastic depth under DDP); with
STANDIN_GATE_LOG=DIR each process writes DIR/gates-rank{RANK}.json, for every training pass the indices of
the residual blocks that ran. With STANDIN_DIE_IN_SAVE=N the N-th checkpoint write is killed (SIGKILL)
halfway through.
"""

import atexit
import json
import os
import signal
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_data import TinyNet, build_standin  # noqa: E402

from cnnzoo import cli, create_model, register_model  # noqa: E402
from cnnzoo.engine import trainer  # noqa: E402


@register_model(input_size=(1, 8, 8), num_classes=4)
def tiny_cnn(**kwargs):
    return TinyNet(**kwargs)


@register_model(input_size=(1, 8, 8), num_classes=4)
def resnet20_no_bn(**kwargs):
    """ResNet-20 (and its stochastic depth) with every BatchNorm an identity: per-rank batch statistics
    would differ from the full batch's, so only without them do DDP ranks equal one process exactly."""
    model = create_model("resnet20", **kwargs)
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.BatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    if log_dir := os.environ.get("STANDIN_GATE_LOG"):
        log_gates(model, os.path.join(log_dir, f"gates-rank{os.environ.get('RANK', '0')}.json"))
    return model


def log_gates(model, path):
    """Record, for each training pass of ``model``, which residual blocks ran (a closed gate skips conv1)."""
    passes = []
    blocks = [m for m in model.modules() if hasattr(m, "drop_path") and hasattr(m, "conv1")]

    def start(module, args):
        if module.training:
            passes.append([])

    def ran(i):
        return lambda module, args, out: passes[-1].append(i) if module.training else None

    model.register_forward_pre_hook(start)
    for i, block in enumerate(blocks):
        block.conv1.register_forward_hook(ran(i))
    atexit.register(lambda: open(path, "w").write(json.dumps({"blocks": len(blocks), "passes": passes})))


if die_at := int(os.environ.get("STANDIN_DIE_IN_SAVE", "0")):
    calls, real_save = [0], torch.save

    def save_then_die(obj, f):
        calls[0] += 1
        if calls[0] < die_at:
            return real_save(obj, f)
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die  # what checkpoint.save_checkpoint calls

trainer.build_data = build_standin
sys.exit(cli.main(sys.argv[1:]))
