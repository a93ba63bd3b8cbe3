"""What every data source shares: the error type, the log, the cache folder and seeded generators."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("cnnzoo.data")


class DataError(ValueError):
    """A bad data spec, a missing path or unreadable files in strict mode; the message says what and how to fix it."""

    def __init__(self, message: str, bad: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.bad = bad or []  # (path, reason) of every unreadable file, when that is the problem


def cache_dir() -> Path | None:
    """Where decoded folders and downloaded data sets live: $CNNZOO_CACHE, else ~/.cache/cnnzoo; None when
    CNNZOO_CACHE is "off"."""
    where = os.environ.get("CNNZOO_CACHE", "")
    if where.lower() == "off":
        return None
    return Path(where).expanduser() if where else Path.home() / ".cache" / "cnnzoo"


def generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (seed, epoch, rank, batch, ...), well mixed so that
    neighbouring tuples give unrelated streams. Drawing on the CPU makes batches identical on every device."""
    state = np.random.SeedSequence([k % 2**63 for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
