"""Data sets that arrive as arrays: the UCI digits (shipped in the package) and CIFAR-10/100 (the python batches)."""

from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets

from .common import DataError, cache_dir

DIGITS_FILE = "digits.npz"  # in this package: images, labels and the fixed train/test split
DIGITS_SIDE = 32  # the 8x8 digits upsampled 4x: big enough for the CIFAR networks' three stages
CIFAR = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


@dataclass
class Arrays:
    """A data set held as uint8 tensors at its natural size."""

    train_images: torch.Tensor  # uint8 N x C x side x side
    train_labels: torch.Tensor  # int64 N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]


def load_digits() -> Arrays:
    """The 1,797 handwritten digits (UCI, 8x8, 17 grey levels), shipped inside the package as digits.npz
    (its source, licence and layout: digits.md beside it).

    Grey levels 0..16 become 0..255, images are upsampled bilinearly to 32x32, and the stored stratified
    80/20 split gives 1,437 training and 360 test images.
    """
    with resources.files(__package__).joinpath(DIGITS_FILE).open("rb") as f, np.load(f, allow_pickle=False) as z:
        images, labels, train, test = (z[k] for k in ("images", "labels", "train", "test"))
    x = torch.from_numpy(images.astype(np.float64)).float()[:, None] * (255 / 16)  # N x 1 x 8 x 8
    x = F.interpolate(x, size=(DIGITS_SIDE, DIGITS_SIDE), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)  # N x 1 x 32 x 32
    y = torch.from_numpy(labels.astype(np.int64))
    train, test = torch.from_numpy(train.astype(np.int64)), torch.from_numpy(test.astype(np.int64))
    return Arrays(x[train], y[train], x[test], y[test], [str(d) for d in range(10)])


class _ArrayUnpickler(pickle.Unpickler):
    """Reads the CIFAR python batches (pickled dicts of numpy arrays) and nothing else: any other global in the
    pickle is refused, so a doctored file cannot run code (a plain pickle.load would run it)."""

    ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")}
    ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}  # how protocol 2 spells bytes when Python 3 wrote the file

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR batch holds only numpy arrays")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"{path} is not a CIFAR python batch ({error}); unpack the original archive again") from None


def _online(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on HTTPS within ``timeout`` seconds; CNNZOO_OFFLINE=1 says no without asking."""
    if os.environ.get("CNNZOO_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _download(name: str, root: Path) -> None:
    """torchvision's own download (URL and MD5 from its data set class), after a quick check for a network."""
    dataset = CIFAR[name]
    where = (f"download {dataset.url} yourself and unpack it into {root} (giving {root / dataset.base_folder}/), "
             f"or give --data {name}:DIR where DIR holds {dataset.base_folder}/")
    host = dataset.url.split("/")[2]
    if not _online(host):
        raise DataError(f"{name} is not in {root} and {host} cannot be reached: {where}")
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(dataset.url, str(root), filename=dataset.filename, md5=dataset.tgz_md5)
    except Exception as error:  # network, disk or checksum: all need the same fix
        raise DataError(f"downloading {name} failed ({error}): {where}") from None


def load_cifar(name: str, path: str | None = None) -> Arrays:
    """CIFAR-10 or CIFAR-100 from the python batches: in ``path`` (the folder holding cifar-10-batches-py/,
    or that folder itself), else in $CNNZOO_CACHE/data/NAME, downloaded there when the network allows."""
    dataset = CIFAR[name]
    if path is None:
        root = (cache_dir() or Path.home() / ".cache" / "cnnzoo") / "data" / name
        if not (root / dataset.base_folder).is_dir():
            _download(name, root)
        folder = root / dataset.base_folder
    else:
        root = Path(path).expanduser()
        folder = root / dataset.base_folder if (root / dataset.base_folder).is_dir() else root
        wanted = [file for file, _ in dataset.train_list + dataset.test_list] + [dataset.meta["filename"]]
        absent = [file for file in wanted if not (folder / file).is_file()]
        if absent:
            raise DataError(f"{root} does not hold the {name} python batches (missing {', '.join(absent)}): give the "
                            f"folder that holds {dataset.base_folder}/, unpacked from {dataset.filename}")

    def split(files: list) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [_read_batch(folder / file) for file, _ in files]
        images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)  # N x 3 x 32 x 32
        labels = np.concatenate([b.get("labels", b.get("fine_labels")) for b in batches])
        return torch.from_numpy(images), torch.from_numpy(labels).long()

    train, test = split(dataset.train_list), split(dataset.test_list)
    classes = _read_batch(folder / dataset.meta["filename"])[dataset.meta["key"]]
    return Arrays(*train, *test, list(classes))
