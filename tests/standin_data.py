"""A stand-in for ``cnnzoo.data.build_data`` (DATA_CONTRACT.md) over in-memory tensors, for the engine's tests.

Deterministic from (seed, epoch); DDP-sharded like a DistributedSampler (rank r takes every world_size-th
sample of the epoch's permutation), so the union of the ranks' batch i is the one-process batch i.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
import torch

from torch import nn

from cnnzoo import registry
from cnnzoo.engine import trainer
from cnnzoo.models.base import ImageClassifier


class TensorLoader:
    def __init__(self, images, labels, batch_size, shuffle=True, seed=0, rank=0, world_size=1, nan_at_step=None,
                 flip=False, hook=None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.nan_at_step = nan_at_step  # (epoch, batch) whose images are NaN: a numerical fault on demand
        self.flip = flip  # random flips from torch's global RNG: exact resume then needs its state restored
        self.hook = hook  # called as hook(epoch, batch) before each batch is yielded (e.g. to send a signal)
        self.num_samples = len(labels) // world_size

    def __len__(self):
        n = self.num_samples
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def epoch(self, epoch, start_batch=0):
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        else:
            order = torch.arange(n)
        order = order[: self.num_samples * self.world_size][self.rank :: self.world_size]
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.images[idx].clone()
            if self.nan_at_step == (epoch, b):
                images[0] = float("nan")
            if self.flip:
                images = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, images.flip(3), images)
            if self.hook:
                self.hook(epoch, b)
            yield images, self.labels[idx]


@dataclass
class Data:
    train: TensorLoader
    test: TensorLoader
    num_classes: int
    in_chans: int
    img_size: int
    classes: list = field(default_factory=list)
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    augment: str = "none"
    skipped: list = field(default_factory=list)


def synthetic(n_train=48, n_test=24, num_classes=4, size=8, chans=1, batch_size=16, seed=0, rank=0,
              world_size=1, nan_at_step=None, flip=False, hook=None) -> Data:
    """Learnable synthetic images: each class is a fixed random pattern plus noise."""
    g = torch.Generator().manual_seed(1234)
    patterns = torch.randn(num_classes, chans, size, size, generator=g)

    def split(n):
        labels = torch.arange(n) % num_classes
        return patterns[labels] + 0.8 * torch.randn(n, chans, size, size, generator=g), labels

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Data(
        TensorLoader(xtr, ytr, batch_size, True, seed, rank, world_size, nan_at_step, flip, hook),
        TensorLoader(xte, yte, batch_size, False, seed, rank, world_size),
        num_classes, chans, size, [str(c) for c in range(num_classes)], (0.0,) * chans, (1.0,) * chans,
    )


@contextlib.contextmanager
def registered(builder, **cfg):
    """Register ``builder`` as a model for the duration of a test, then remove it (list_models stays clean)."""
    registry.register_model(builder, **cfg)
    try:
        yield builder.__name__
    finally:
        registry._MODELS.pop(builder.__name__)
        registry._CFGS.pop(builder.__name__)


@pytest.fixture
def one_thread():
    """Tests train on one thread: steadier on a shared machine, and equal to the subprocesses (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_standin(spec, batch_size, seed=0, rank=0, world_size=1, **ignored):
    """In place of cnnzoo.data.build_data: synthetic data whatever the spec."""
    return synthetic(batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)


@pytest.fixture
def standin_cli(monkeypatch):
    """`cnnzoo train` / `cnnzoo eval` read the stand-in synthetic data in place of cnnzoo.data."""
    monkeypatch.setattr(trainer, "build_data", build_standin)


class TinyNet(ImageClassifier):
    """Convolutions, ReLU, global average pool, fc: no BatchNorm (DDP ranks then equal one process exactly).

    ``aux``: the training forward also returns an auxiliary head, deliberately wrong (the negated logits),
    as GoogLeNet's tuple. ``kernel``, ``padding`` and ``layers`` set the smallest input it accepts.
    """

    def __init__(self, num_classes=4, in_chans=1, aux=False, kernel=3, padding=1, layers=1):
        super().__init__()
        self.body = nn.Sequential(*(nn.Conv2d(in_chans if i == 0 else 8, 8, kernel, padding=padding)
                                    for i in range(layers)))
        self.fc = nn.Linear(8, num_classes)
        self.num_features = 8
        self.aux = aux

    def forward_features(self, x):
        return torch.relu(self.body(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        logits = super().forward(x)
        return (logits, -logits) if self.aux and self.training else logits
