"""``build_data(spec, ...)``: a data spec becomes train and test loaders (see cnnzoo.data for the specs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import torch
from torch import Tensor

from .common import DataError, log
from .folder import FolderScan, Split, decode_folder, decode_split, natural_side, scan_folder, shown
from .loaders import FolderLoader, TensorLoader
from .sources import CIFAR, Arrays, load_cifar, load_digits
from .transforms import AUGMENTS, EVAL_CROPS, BatchAugment, Geometry, channel_stats, sample_transform

# In-memory fast path when all decoded images (uint8, both splits) take at most this much, and at most a quarter
# of the machine's RAM: CIFAR-10 takes 184 MB, a 10,000-image folder stored at 256x256 2 GB; ImageNet (250 GB
# at 256x256) goes to DataLoader workers.
IN_MEMORY_BYTES = 4 * 2**30
NATURAL_MAX = 64  # folders of equal squares up to this side (CIFAR, Tiny ImageNet) are used at their own size
FOLDER_IMG_SIZE = 224  # other folders: the ImageNet convention, 224 crops of images stored at 256
STATS_SAMPLE = 500  # images decoded to estimate mean, std and the lighting PCA of a folder read by workers
AUTO_AUGMENT = {"digits": "shift", "cifar10": "cifar", "cifar100": "cifar"}  # folders: see _folder_data


class Loader(Protocol):
    num_samples: int  # samples one epoch delivers on this rank

    def __len__(self) -> int: ...  # batches per epoch on this rank

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]: ...


@dataclass
class Data:
    train: Loader
    test: Loader  # the val/ or test/ split
    num_classes: int
    in_chans: int  # 1 for digits, 3 otherwise
    img_size: int  # side of the delivered images
    classes: list[str]
    mean: tuple[float, ...]  # normalisation of [0, 1] pixels, per channel
    std: tuple[float, ...]
    augment: str  # the resolved augmentation name
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable files skipped; workers append as they find them


def parse_spec(spec: str) -> tuple[str, str | None]:
    """"digits" | "cifar10" | "cifar100" | "cifar10:DIR" | "cifar100:DIR" | "folder:PATH" | PATH -> (kind, path)."""
    if spec == "digits" or spec in CIFAR:
        return spec, None
    head, colon, tail = spec.partition(":")
    if colon and (head in CIFAR or head == "folder"):
        if not tail:
            raise DataError(f"data spec {spec!r} names no folder: write {head}:PATH")
        return head, tail
    if not Path(spec).expanduser().exists():
        raise DataError(f"unknown data {spec!r}: give digits, cifar10, cifar100, cifar10:DIR, cifar100:DIR, "
                        f"or the path of an ImageFolder tree (folder:PATH); no folder {spec} exists")
    return "folder", spec


def _check_args(batch_size, img_size, augment, eval_crops, rank, world_size, workers) -> None:
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if img_size is not None and img_size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {img_size}")
    if augment not in AUGMENTS + ("auto",):
        raise DataError(f"unknown augmentation {augment!r}; choose from auto, {', '.join(AUGMENTS)}")
    if eval_crops not in EVAL_CROPS:
        raise DataError(f"unknown eval crops {eval_crops!r}; choose from {', '.join(EVAL_CROPS)}")
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is outside 0..{world_size - 1} for world size {world_size}")
    if workers < 0:
        raise DataError(f"workers must be 0 (read in this process) or more, got {workers}")


def _normalisation(mean, std, stats, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = tuple(mean) if mean is not None else tuple(round(float(m), 4) for m in stats[0])
    std = tuple(std) if std is not None else tuple(round(float(s), 4) for s in stats[1])
    if len(mean) != in_chans or len(std) != in_chans:
        raise DataError(f"mean {mean} and std {std} need one value per channel: this data set has {in_chans}")
    return mean, std


def _place(images: list[Tensor], device: torch.device) -> list[Tensor]:
    """Decoded images go to the accelerator when they take at most a quarter of its memory (augmenting there),
    else stay in pinned host memory and travel a batch at a time."""
    if device.type == "cpu":
        return images
    size = sum(x.numel() for x in images)
    if device.type == "cuda" and size > torch.cuda.get_device_properties(device).total_memory // 4:
        return [x.pin_memory() for x in images]
    return [x.to(device) for x in images]


def _in_memory(arrays: Arrays, geometry: Geometry, augment: str, eval_crops: str, mean, std,
               skipped: list[tuple[str, str]], loader_kw: dict) -> Data:
    in_chans = arrays.train_images.shape[1]
    stats = channel_stats(arrays.train_images)
    mean, std = _normalisation(mean, std, stats, in_chans)
    batch_augment = BatchAugment(augment, geometry, mean, std, stats[2], stats[3], eval_crops)
    train_images, test_images = _place([arrays.train_images, arrays.test_images], loader_kw["device"])
    train = TensorLoader(train_images, arrays.train_labels, train=True, augment=batch_augment, **loader_kw)
    test = TensorLoader(test_images, arrays.test_labels, train=False, augment=batch_augment, **loader_kw)
    return Data(train, test, len(arrays.classes), in_chans, geometry.img_size, list(arrays.classes), mean, std,
                augment, skipped)


def _refuse(bad: list[tuple[str, str]], root: Path) -> DataError:
    listing = "; ".join(f"{shown(os.path.relpath(path, root))}: {reason}" for path, reason in bad)
    return DataError(f"{len(bad)} unreadable file(s) in {root} (strict): {listing}; remove or replace them, "
                     f"or run without strict data to skip them", bad)


def _log_folder(scan: FolderScan, skipped: list[tuple[str, str]]) -> None:
    ignored = scan.train.ignored + scan.test.ignored
    if ignored:
        log.warning("ignored %d entries of %s that are not image files (e.g. %s: %s); `cnnzoo check-data` lists them",
                    len(ignored), scan.root, shown(ignored[0][0]), ignored[0][1])
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s: %s", len(skipped), scan.root,
                    "; ".join(f"{shown(path)}: {reason}" for path, reason in skipped))
    for folder in scan.train.empty + scan.test.empty:
        log.warning("class folder %s/%s holds no images", scan.root, folder)
    if scan.missing:
        log.warning("class(es) %s have no folder in %s/%s: they are trained but never evaluated",
                    ", ".join(scan.missing), scan.root, scan.test.name)


def _folder_data(path: str, img_size, augment, eval_crops, mean, std, workers, strict, in_memory, cache,
                 loader_kw) -> Data:
    scan = scan_folder(path)
    side = natural_side(scan.train.paths)
    if side and side <= NATURAL_MAX:
        geometry, auto = Geometry.natural(side, img_size), "cifar"
    else:
        geometry, auto = Geometry.resized(img_size or FOLDER_IMG_SIZE), "inception"
    augment = auto if augment == "auto" else augment
    decoded_bytes = (len(scan.train) + len(scan.test)) * 3 * geometry.store**2
    if in_memory is None:
        in_memory = decoded_bytes <= _memory_budget()

    special = scan.train.unreadable + scan.test.unreadable  # FIFOs, sockets, broken links: never opened
    if in_memory:
        decoded = decode_folder(scan, geometry.store, workers, cache)
        train, test = decoded["train"], decoded[scan.test.name]
        skipped = special + train.skipped + test.skipped
        for split, d in ((scan.train, train), (scan.test, test)):
            _require_readable(split, len(d.labels), d.skipped, scan.root)
        if strict and skipped:
            raise _refuse(skipped, scan.root)
        _log_folder(scan, skipped)
        arrays = Arrays(train.images, train.labels, test.images, test.labels, scan.classes)
        return _in_memory(arrays, geometry, augment, eval_crops, mean, std, skipped, loader_kw)

    if strict:  # check every file now, not when a worker meets it in epoch 3
        bad = special + [b for d in decode_folder(scan, None, workers, cache).values() for b in d.skipped]
        if bad:
            raise _refuse(bad, scan.root)
    skipped = special + [(p, "empty file (0 bytes)") for s in (scan.train, scan.test)
                         for p, n in zip(s.paths, s.sizes) if not n]
    _log_folder(scan, skipped)
    train, test = (_without_empty_files(s) for s in (scan.train, scan.test))
    step = max(1, len(train) // STATS_SAMPLE)
    sample = Split("sample", train.paths[::step][:STATS_SAMPLE], train.labels[::step][:STATS_SAMPLE])
    decoded_sample = decode_split(sample, geometry.store, workers)
    _require_readable(sample, len(decoded_sample.labels), decoded_sample.skipped, scan.root, scan.train.name)
    stats = channel_stats(decoded_sample.images)
    mean, std = _normalisation(mean, std, stats, 3)
    batch_augment = BatchAugment(augment, geometry, mean, std, stats[2], stats[3], eval_crops)
    kw = dict(loader_kw, augment=batch_augment, workers=workers, skipped=skipped)
    return Data(
        FolderLoader(train.paths, train.labels, sample_transform(augment, geometry, train=True), train=True, **kw),
        FolderLoader(test.paths, test.labels, sample_transform(augment, geometry, train=False, eval_crops=eval_crops),
                     train=False, **kw),
        len(scan.classes), 3, geometry.img_size, scan.classes, mean, std, augment, skipped)


def _require_readable(split: Split, readable: int, skipped: list[tuple[str, str]], root: Path,
                      name: str | None = None) -> None:
    """A DataError when not one image of a split could be decoded (nothing to train or test on)."""
    if readable or not split.paths:
        return
    path, reason = skipped[0] if skipped else (split.paths[0], "unreadable")
    raise DataError(f"no readable image in {shown(str(root))}/{name or split.name}: all {len(split.paths)} image"
                    f" files failed to decode (e.g. {shown(os.path.relpath(path, root))}: {reason});"
                    " `cnnzoo check-data` lists them")


def _without_empty_files(split: Split) -> Split:
    keep = [i for i, size in enumerate(split.sizes) if size]
    return Split(split.name, [split.paths[i] for i in keep], [split.labels[i] for i in keep])


def _memory_budget() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a modest machine
        ram = 8 * 2**30
    return min(IN_MEMORY_BYTES, ram // 4)


def build_data(spec: str, *, batch_size: int, img_size: int | None = None, augment: str = "auto",
               eval_crops: str = "center", mean=None, std=None, device: str | torch.device = "cpu", seed: int = 0,
               rank: int = 0, world_size: int = 1, workers: int = 2, strict: bool = False,
               in_memory: bool | None = None, cache: bool = True) -> Data:
    """Train and test loaders for a data spec (see the package docstring for specs and augmentations).

    ``in_memory``: None decides by size (IN_MEMORY_BYTES), True/False forces the in-memory or the worker path.
    ``cache``: keep decoded folders under $CNNZOO_CACHE (default ~/.cache/cnnzoo) for the next run.
    """
    _check_args(batch_size, img_size, augment, eval_crops, rank, world_size, workers)
    kind, path = parse_spec(spec)
    loader_kw = dict(batch_size=batch_size, device=torch.device(device), seed=seed, rank=rank, world_size=world_size)
    if kind == "folder":
        return _folder_data(path, img_size, augment, eval_crops, mean, std, workers, strict, in_memory, cache,
                            loader_kw)
    arrays = load_digits() if kind == "digits" else load_cifar(kind, path)
    geometry = Geometry.natural(arrays.train_images.shape[-1], img_size)
    augment = AUTO_AUGMENT[kind] if augment == "auto" else augment
    return _in_memory(arrays, geometry, augment, eval_crops, mean, std, [], loader_kw)
