"""Data sets and the papers' augmentations: ``build_data(spec, batch_size=...)`` gives train and test loaders.

Specs:
    digits               the UCI 1,797 handwritten digits, upsampled to 32x32 (shipped as digits.npz, no download)
    cifar10, cifar100    torchvision's CIFAR, downloaded to $CNNZOO_CACHE/data when the network allows
    cifar10:DIR          a local copy of the python batches (DIR holds cifar-10-batches-py/)
    folder:PATH, PATH    an ImageFolder tree: PATH/train/<class>/<image> and PATH/val/ (or test/)

Data sets that fit in memory (digits, CIFAR, folders up to IN_MEMORY_BYTES decoded) are decoded once into
uint8 tensors (folders in parallel, cached on disk) and augmented a whole batch at a time on the target
device; larger folders are read by DataLoader workers with torchvision transforms v2. Either way an epoch's
batches are a pure function of (seed, epoch), and DDP ranks get disjoint shards of equal batch counts.
"""

from .build import IN_MEMORY_BYTES, Data, Loader, build_data, parse_spec
from .common import DataError
from .folder import FolderReport, check_folder
from .transforms import AUGMENTS, EVAL_CROPS

__all__ = ["AUGMENTS", "EVAL_CROPS", "IN_MEMORY_BYTES", "Data", "DataError", "FolderReport", "Loader",
           "build_data", "check_folder", "parse_spec"]
