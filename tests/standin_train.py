"""`cnnzoo ...` in a real process, reading the stand-in data: for tests of signals, kills and torchrun.

    python tests/standin_train.py train --epochs 3 ...            (or under torchrun)

It also registers ``tiny_cnn`` (no BatchNorm, so DDP over ranks equals one process exactly), and with
STANDIN_DIE_IN_SAVE=N the N-th checkpoint write is killed (SIGKILL) halfway through.
"""

import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_data import TinyNet, build_standin  # noqa: E402

from cnnzoo import cli, register_model  # noqa: E402
from cnnzoo.engine import trainer  # noqa: E402


@register_model(input_size=(1, 8, 8), num_classes=4)
def tiny_cnn(**kwargs):
    return TinyNet(**kwargs)


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
