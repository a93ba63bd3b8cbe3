"""`cnnzoo ...` in a real process, reading the stand-in data: for tests of signals, kills and torchrun.

    python tests/standin_train.py train --epochs 3 ...            (or under torchrun)

It also registers ``tiny_cnn`` (no BatchNorm, so DDP over ranks equals one process exactly), and with
STANDIN_DIE_IN_SAVE=N the N-th checkpoint write is killed (SIGKILL) halfway through.
"""

import os
import signal
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_data import build_standin  # noqa: E402

from cnnzoo import cli, register_model  # noqa: E402
from cnnzoo.engine import checkpoint, trainer  # noqa: E402
from cnnzoo.models.base import ImageClassifier  # noqa: E402


class TinyCNN(ImageClassifier):
    def __init__(self, num_classes=4, in_chans=1):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)
        self.num_features = 8

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)


@register_model(input_size=(1, 8, 8), num_classes=4)
def tiny_cnn(**kwargs):
    return TinyCNN(**kwargs)


if die_at := int(os.environ.get("STANDIN_DIE_IN_SAVE", "0")):
    calls, real_save = [0], torch.save

    def save_then_die(obj, f):
        calls[0] += 1
        if calls[0] < die_at:
            return real_save(obj, f)
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.torch.save = save_then_die

trainer.build_data = build_standin
sys.exit(cli.main(sys.argv[1:]))
