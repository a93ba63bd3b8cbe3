"""Loaders: an epoch's batches as a pure function of (seed, epoch), sharded over DDP ranks.

Two implementations of one protocol (``num_samples``, ``len()``, ``epoch(e, start_batch)``):
:class:`TensorLoader` indexes decoded uint8 tensors and augments whole batches on the device;
:class:`FolderLoader` reads files in DataLoader workers with torchvision transforms v2. Randomness never
comes from a global generator: the order from (seed, epoch), the in-memory augmentation from
(seed, epoch, rank, batch) and a worker's per-image augmentation from (seed, epoch, image), so
``epoch(e, start_batch=k)`` is exactly the tail of ``epoch(e)``.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .common import DataError, generator, log
from .folder import read_rgb, unreadable_reason
from .transforms import LIGHTING_AUGMENTS, BatchAugment

ORDER, SAMPLE_SEEDS = 0, 1  # stream tags: generator(seed, epoch, TAG) for the shuffle and the per-image seeds


def shard_batches(order: Tensor, batch_size: int, train: bool, rank: int, world_size: int) -> list[Tensor]:
    """Split one epoch's order into this rank's batches.

    Training: every rank takes ``n // world_size`` disjoint samples (the few left over change every epoch)
    and drops its last partial batch, so ranks step together and every batch has the same shape (no
    BatchNorm batch of one, no recompilation). Evaluation: every sample once, ``order[rank::world_size]``,
    with the same number of batches on every rank.
    """
    n = len(order)
    if train:
        per_rank = n // world_size
        shard = order[: per_rank * world_size][rank::world_size]
        full = per_rank // batch_size
        return list(shard[: full * batch_size].split(batch_size)) if full else [shard]
    shard = order[rank::world_size]
    batches = list(shard.split(batch_size))
    most = math.ceil(math.ceil(n / world_size) / batch_size)  # batches of the ranks holding one sample more
    if len(batches) < most:  # this rank is one sample short of a batch: spread its samples over one more
        batches = list(shard.tensor_split(most))
    return batches


class _Loader:
    """Ordering and sharding shared by both loaders."""

    def __init__(self, num_items: int, *, batch_size: int, train: bool, augment: BatchAugment, device,
                 seed: int, rank: int, world_size: int):
        if num_items < world_size:
            raise DataError(f"a split of {num_items} readable images cannot feed {world_size} process(es): "
                            f"each needs at least one")
        self.augment, self.train, self.device = augment, train, torch.device(device)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_items = num_items
        batches = self._batches(0)
        self.num_batches = len(batches)
        self.num_samples = sum(len(b) for b in batches)  # samples one epoch delivers on this rank

    def __len__(self) -> int:
        return self.num_batches

    def _order(self, epoch: int) -> Tensor:
        if not self.train:
            return torch.arange(self.num_items)
        return torch.randperm(self.num_items, generator=generator(self.seed, epoch, ORDER))

    def _batches(self, epoch: int) -> list[Tensor]:
        return shard_batches(self._order(epoch), self.batch_size, self.train, self.rank, self.world_size)

    def _finish(self, images: Tensor, epoch: int, b: int, geometry_done: bool) -> Tensor:
        if not self.train:
            return self.augment.finish(images) if geometry_done else self.augment.eval(images)
        gen = generator(self.seed, epoch, self.rank, b)
        if geometry_done:
            return self.augment.finish(images, gen if self.augment.augment in LIGHTING_AUGMENTS else None)
        return self.augment.train(images, gen)


class TensorLoader(_Loader):
    """Batches from uint8 images already in memory (on the device when they fit): one gather, then the
    augmentation as tensor operations on the whole batch. No per-image Python."""

    def __init__(self, images: Tensor, labels: Tensor, **kw):
        self.images, self.labels = images, labels.to(images.device)
        super().__init__(len(images), **kw)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        for b, index in enumerate(self._batches(epoch)[start_batch:], start_batch):
            index = index.to(self.images.device)
            images = self.images.index_select(0, index).to(self.device, non_blocking=True)
            labels = self.labels.index_select(0, index).to(self.device, non_blocking=True)
            yield self._finish(images, epoch, b, geometry_done=False), labels


class _Files(Dataset):
    """Image files for DataLoader workers. An item is (index, seed): the per-image transform is seeded, so an
    image's crop does not depend on which worker reads it. An unreadable file is replaced by the next readable
    one and reported with the batch, never raised mid-epoch."""

    def __init__(self, paths: list[str], labels: list[int], transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, int, list[tuple[str, str]]]:
        index, seed = item
        bad = []
        for i in range(index, index + len(self.paths)):
            path = self.paths[i % len(self.paths)]
            try:
                image, _ = read_rgb(path)
            except Exception as error:  # any decoder error: skip this file, take the next one
                bad.append((path, unreadable_reason(path, error)))
                continue
            with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator: seed it, then restore
                torch.manual_seed(seed)
                return self.transform(image), self.labels[i % len(self.paths)], bad
        raise DataError(f"no file of {len(self.paths)} in this split can be read")


def _collate(items: list) -> tuple[Tensor, Tensor, list[tuple[str, str]]]:
    images, labels, bad = zip(*items)
    return torch.stack(images), torch.tensor(labels), [b for found in bad for b in found]


class _EpochBatches:
    """The batch sampler of a persistent DataLoader: set to one epoch's batches before each pass."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class FolderLoader(_Loader):
    """Batches read from image files by DataLoader workers (folders too large to hold decoded in memory).

    Workers do the geometry per image and deliver uint8; lighting and normalisation run on the device.
    Files found unreadable here are appended to ``skipped`` (the same list as ``Data.skipped``) and logged once.
    """

    def __init__(self, paths: list[str], labels: list[int], transform, *, workers: int,
                 skipped: list[tuple[str, str]], **kw):
        super().__init__(len(paths), **kw)
        self.skipped, self._seen = skipped, {path for path, _ in skipped}
        self.sampler = _EpochBatches()
        self.loader = DataLoader(_Files(paths, labels, transform), batch_sampler=self.sampler,
                                 num_workers=workers, collate_fn=_collate, persistent_workers=workers > 0,
                                 pin_memory=self.device.type == "cuda")

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        # One seed per image and epoch, the same on every rank and however the epoch is entered.
        seeds = torch.randint(2**62, (self.num_items,), generator=generator(self.seed, epoch, SAMPLE_SEEDS)).tolist()
        batches = self._batches(epoch)[start_batch:]
        self.sampler.batches = [[(i, seeds[i]) for i in index.tolist()] for index in batches]
        for b, (images, labels, bad) in enumerate(self.loader, start_batch):
            self._report(bad)
            images = images.to(self.device, non_blocking=True)
            yield self._finish(images, epoch, b, geometry_done=True), labels.to(self.device, non_blocking=True)

    def _report(self, bad: list[tuple[str, str]]) -> None:
        for path, reason in bad:
            if path not in self._seen:
                self._seen.add(path)
                self.skipped.append((path, reason))
                log.warning("skipped unreadable file %s: %s (the next readable file took its place)", path, reason)
