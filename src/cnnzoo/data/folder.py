"""ImageFolder trees: scan, check every file, decode once into uint8 tensors (in parallel, cached on disk).

Layout: ``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>`` (or ``test/``). Classes are the
sub-folders of ``train/``, sorted; ``val/`` uses the same indices. Every file name Pillow can open (any
case: ``.JPG``, ``.jfif``, ``.gif``, ``.webp``, ``.tif`` ...) is an image. Images in another mode (RGBA,
grayscale, CMYK, palette, 16-bit) are converted to 8-bit RGB, 16-bit values scaled rather than clipped;
files it cannot read (empty, truncated, not an image) are skipped and reported, or refused up front in strict
mode. Nothing in the tree is passed over silently: entries that are not regular files (FIFOs, sockets,
dangling symlinks, symlink loops, unreadable folders) count as unreadable and are never opened, and other
files (hidden, or not an image format) are listed as ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ..files import FileError, atomic_write, tensor_bytes
from .common import DataError, cache_dir, log
from .transforms import Geometry, store_steps

EVAL_SPLITS = ("val", "test")
CACHE_VERSION = 1  # bump when the stored form of a decoded folder changes


@dataclass
class Split:
    """The image files of one split, in a fixed order (class, then file name)."""

    name: str  # "train", "val" or "test"
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # bytes per file
    mtimes: list[int] = field(default_factory=list)  # ns, for the cache key
    empty: list[str] = field(default_factory=list)  # class folders holding no image file
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why): special files, unreadable folders
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, why): hidden files, not image formats

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class FolderScan:
    root: Path
    classes: list[str]
    train: Split
    test: Split
    missing: list[str]  # classes of train/ without a folder in the eval split

    def fingerprint(self, *extra) -> str:
        """A key that changes when any file is added, removed, resized or touched."""
        digest = hashlib.sha256(json.dumps([CACHE_VERSION, str(self.root), *extra]).encode())
        for split in (self.train, self.test):
            for path, size, mtime in zip(split.paths, split.sizes, split.mtimes):
                digest.update(os.fsencode(path) + f"\0{size}\0{mtime}\n".encode())  # names need not be UTF-8
        return digest.hexdigest()[:24]


def _pillow_extensions() -> tuple[str, ...]:
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


IMG_EXTENSIONS = _pillow_extensions()  # every format Pillow opens: .jpg .jfif .png .gif .webp .tif ...


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def shown(path: str) -> str:
    """A path as text that prints anywhere: bytes of a non-UTF-8 name become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _special(path: str) -> str | None:
    """Why ``path`` is not a regular file that can be read (stat only: a FIFO is never opened), or None."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError as e:
        if e.errno == 40:  # ELOOP
            return "symlink loop"
        if os.path.islink(path):
            return "dangling symlink"
        return f"cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISFIFO, "FIFO (named pipe), not a file"), (stat.S_ISSOCK, "socket, not a file"),
             (stat.S_ISCHR, "character device, not a file"), (stat.S_ISBLK, "block device, not a file"),
             (stat.S_ISDIR, "folder inside a class folder (not searched)"))
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _entries(path: Path) -> list[os.DirEntry]:
    return sorted(os.scandir(path), key=lambda e: os.fsencode(e.name))


def _class_dirs(path: Path) -> list[str]:
    try:
        entries = _entries(path)
    except OSError as e:
        raise DataError(f"cannot read the folder {shown(str(path))}: {e.strerror}") from None
    return [e.name for e in entries if not e.name.startswith(".") and os.path.isdir(e.path)]


def _scan_split(path: Path, classes: list[str]) -> Split:
    split = Split(path.name)
    for label, name in enumerate(classes):
        folder = path / name
        if not folder.is_dir():
            continue
        try:
            entries = _entries(folder)
        except OSError as e:
            split.unreadable.append((str(folder), f"folder cannot be read ({e.strerror})"))
            continue
        images = 0
        for entry in entries:
            if entry.name.startswith("."):
                split.ignored.append((entry.path, "hidden file"))
            elif not is_image_file(entry.name):
                why = _special(entry.path)
                split.ignored.append((entry.path, why or f"{os.path.splitext(entry.name)[1] or 'no extension'}"
                                                         " is not an image format Pillow reads"))
            elif why := _special(entry.path):
                split.unreadable.append((entry.path, why))
            else:
                stat_ = os.stat(entry.path)
                split.paths.append(entry.path)
                split.labels.append(label)
                split.sizes.append(stat_.st_size)
                split.mtimes.append(stat_.st_mtime_ns)
                images += 1
        if not images:
            split.empty.append(f"{path.name}/{name}")
    return split


def scan_folder(root: str | os.PathLike) -> FolderScan:
    """List the tree's classes and files (no decoding). Raises DataError for a tree cnnzoo cannot use."""
    root = Path(root).expanduser().resolve()
    layout = "an ImageFolder tree needs ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (or test/)"
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; {layout}")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ sub-folder; {layout}")
    eval_dir = next((root / s for s in EVAL_SPLITS if (root / s).is_dir()), None)
    if eval_dir is None:
        raise DataError(f"{root} has no val/ or test/ sub-folder; {layout}")
    classes = _class_dirs(root / "train")
    if not classes:
        raise DataError(f"{root}/train has no class sub-folders; {layout}")
    strangers = sorted(set(_class_dirs(eval_dir)) - set(classes))
    if strangers:
        raise DataError(f"class folder(s) {', '.join(strangers)} in {eval_dir} have no counterpart in "
                        f"{root}/train; class indices come from train/: add them there or remove them")
    train = _scan_split(root / "train", classes)
    if not train.paths:
        ignored = len(train.ignored) + len(train.unreadable)
        raise DataError(f"{root}/train holds no image files that Pillow can open (.jpg, .png, .gif, .webp, .tif, ..."
                        f" in any case){f'; {ignored} other entries were passed over' if ignored else ''}")
    test = _scan_split(eval_dir, classes)
    if not test.paths:
        raise DataError(f"{eval_dir} holds no image files in class folders named as in train/; {layout}")
    missing = [name for name in classes if not (eval_dir / name).is_dir()]
    return FolderScan(root, classes, train, test, missing)


def natural_side(paths: list[str], samples: int = 64) -> int | None:
    """The side of the images when a sample of them (headers only) are all squares of one size, else None."""
    sizes = set()
    for path in paths[:: max(1, len(paths) // samples)][:samples]:
        try:
            with Image.open(path) as image:
                sizes.add(image.size)
        except Exception:  # unreadable files are found and reported when decoding
            continue
    if len(sizes) == 1 and (size := sizes.pop())[0] == size[1]:
        return size[0]
    return None


def read_rgb(path: str) -> tuple[Image.Image, str]:
    """Decode a file completely (a truncated file fails here, not later); returns it in RGB and its own mode."""
    image = Image.open(path)
    try:
        image.load()  # also closes the file
    except BaseException:
        image.close()
        raise
    if image.mode == "RGB":
        return image, "RGB"
    return to_8bit(image).convert("RGB"), image.mode


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images scaled to 8 bits (Pillow's convert would clip everything above 255)."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    a = np.asarray(image, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    if image.mode.startswith("I;16"):
        full = 65535.0
    elif image.mode == "F":
        full = 1.0 if top <= 1 else 255.0 if top <= 255 else top  # floats: [0, 1] or [0, 255]
    else:  # "I": 8, 16 or 32 significant bits
        full = 255.0 if top <= 255 else 65535.0 if top <= 65535 else float(2**32 - 1)
    return Image.fromarray(np.clip(np.round(a * (255.0 / full)), 0, 255).astype(np.uint8), "L")


def unreadable_reason(path: str, error: Exception) -> str:
    if os.path.exists(path) and os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    return f"corrupt image ({error})"


class _Decode(Dataset):
    """Decodes file i to a stored square (or only checks it when side is None); never raises for a bad file."""

    def __init__(self, paths: list[str], side: int | None):
        self.paths = paths
        self.to_square = v2.Compose(store_steps(Geometry(side, side, side))) if side else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str, str]:
        try:
            image, mode = read_rgb(self.paths[i])
        except Exception as error:  # any decoder error means this one file is unusable
            return i, None, "", unreadable_reason(self.paths[i], error)
        return i, (self.to_square(image) if self.to_square else None), mode, ""


@dataclass
class Decoded:
    """One split decoded: what the in-memory path trains on, and what went wrong."""

    images: torch.Tensor | None  # uint8 N x 3 x side x side (None when only checked)
    labels: torch.Tensor  # int64 N
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable files, left out of images
    converted: list[tuple[str, str]]  # (path, original mode) of files converted to RGB


def decode_split(split: Split, side: int | None, workers: int) -> Decoded:
    """Decode every file of a split with ``workers`` processes (DataLoader workers), keeping file order."""
    n = len(split)
    images = torch.empty(n, 3, side, side, dtype=torch.uint8) if side else None
    ok = torch.zeros(n, dtype=torch.bool)
    skipped, converted = [], []
    loader = DataLoader(_Decode(split.paths, side), batch_size=256, num_workers=workers if n > 512 else 0,
                        collate_fn=list)
    for batch in loader:
        for i, image, mode, reason in batch:
            if reason:
                skipped.append((split.paths[i], reason))
                continue
            ok[i] = True
            if image is not None:
                images[i] = image
            if mode != "RGB":
                converted.append((split.paths[i], mode))
    labels = torch.tensor(split.labels, dtype=torch.int64)[ok]
    return Decoded(images[ok] if side else None, labels, skipped, converted)


def decode_folder(scan: FolderScan, side: int | None, workers: int, cache: bool = True) -> dict[str, Decoded]:
    """Both splits decoded at ``side`` (or only checked, side None), from the disk cache when the files are
    unchanged: a second run does not decode 60,000 JPEGs again. Cache: $CNNZOO_CACHE/folders."""
    where = cache_dir() if cache else None
    file = where / "folders" / f"{scan.fingerprint('decoded', side)}.pt" if where else None
    if file is not None and file.exists():
        try:
            stored = torch.load(file, weights_only=True, mmap=True)
            return {name: Decoded(s["images"], s["labels"], [tuple(x) for x in s["skipped"]],
                                  [tuple(x) for x in s["converted"]]) for name, s in stored.items()}
        except Exception as error:  # a damaged cache file is rebuilt, never fatal
            log.warning("ignoring unreadable cache file %s (%s)", file, error)
    decoded = {split.name: decode_split(split, side, workers) for split in (scan.train, scan.test)}
    if file is not None:
        stored = {name: vars(d) for name, d in decoded.items()}
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(file, lambda f: torch.save(stored, f), size=tensor_bytes(stored) + 2**20)
        except (OSError, FileError) as error:  # the cache only saves time: a full disk is not fatal
            log.warning("could not write the decoded-folder cache (%s); continuing without it", error)
    return decoded


@dataclass
class FolderReport:
    """What ``cnnzoo check-data`` prints: a folder data set checked file by file, without training."""

    root: Path
    classes: list[str]
    counts: dict[str, Counter]  # split -> class -> readable images
    converted: list[tuple[str, str]]  # (path, original mode): readable, converted to RGB
    unreadable: list[tuple[str, str]]  # (path, reason): skipped in training, refused with strict
    empty: list[str]  # class folders without images, as "split/class"
    missing: list[str]  # classes of train/ with no folder in the eval split
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not image files, never read

    @property
    def problems(self) -> int:
        return len(self.unreadable) + len(self.empty) + len(self.missing)

    def lines(self) -> list[str]:
        """The report as lines of printable text (file names that are not UTF-8 shown with \\x escapes)."""
        def rel(path: str) -> str:
            return shown(os.path.relpath(path, self.root))

        out = [f"data set   {shown(str(self.root))}",
               f"classes    {len(self.classes)}: {', '.join(map(shown, self.classes))}"]
        for split, counts in self.counts.items():
            per_class = ", ".join(f"{shown(name)} {counts[name]}" for name in self.classes)
            out.append(f"{split:<10} {sum(counts.values())} readable images ({per_class})")
        if self.converted:
            modes = Counter(mode for _, mode in self.converted)
            out.append(f"converted to RGB: {len(self.converted)} ("
                       + ", ".join(f"{m} {k}" for m, k in sorted(modes.items())) + ")")
            out += [f"  {rel(p)} ({mode})" for p, mode in self.converted]
        if self.unreadable:
            out.append(f"unreadable, skipped when training: {len(self.unreadable)}")
            out += [f"  {rel(p)}: {reason}" for p, reason in self.unreadable]
        if self.ignored:
            out.append(f"ignored, not image files: {len(self.ignored)}")
            out += [f"  {rel(p)}: {reason}" for p, reason in self.ignored]
        if self.empty:
            out.append(f"empty class folders: {', '.join(map(shown, self.empty))}")
        if self.missing:
            out.append(f"classes missing from the evaluation split: {', '.join(map(shown, self.missing))}")
        out.append("clean: ready to train" if not self.problems else f"{self.problems} problem(s) found")
        return out


def check_folder(root: str | os.PathLike, workers: int = 2) -> FolderReport:
    """Decode every file of an ImageFolder tree and report classes, counts and every problem."""
    scan = scan_folder(root)
    decoded = decode_folder(scan, None, workers)
    counts = {name: Counter(scan.classes[i] for i in d.labels.tolist()) for name, d in decoded.items()}
    return FolderReport(scan.root, scan.classes, counts,
                        converted=[x for d in decoded.values() for x in d.converted],
                        unreadable=scan.train.unreadable + scan.test.unreadable
                        + [x for d in decoded.values() for x in d.skipped],
                        empty=scan.train.empty + scan.test.empty, missing=scan.missing,
                        ignored=scan.train.ignored + scan.test.ignored)
