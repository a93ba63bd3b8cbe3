"""Helpers and fixtures of the fault-injection suite (issue 15): real full disks, damaged files, hostile trees."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # standin_data, shared with the engine's tests

SRC = TESTS.parent / "src"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}


def cnnzoo(*args, timeout=120, env=None, **kw) -> subprocess.CompletedProcess:
    """`python -m cnnzoo ARGS` in a real process (a hang fails the test instead of blocking it)."""
    env = env or {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "cnnzoo", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def one_line(stderr: str) -> str:
    """The single line of an error, asserting there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def image(path: Path, size=(12, 12), seed=0, fmt=None, mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def tree(root: Path, classes=("a", "b"), per_class=(4, 2)) -> Path:
    """A clean ImageFolder tree of small JPEGs."""
    seed = 0
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            for i in range(n):
                seed += 1
                image(root / split / c / f"{i}.jpg", seed=seed)
    return root


@contextlib.contextmanager
def small_filesystem(where: Path, size: str):
    """A real tmpfs of ``size`` mounted at ``where`` (root only); skips the test when mounting is not permitted."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() or 'mount failed'}): needs root"
                    " or CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system holding ``folder`` until only ``leave`` bytes are free; returns the ballast file."""
    ballast = folder / "ballast"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(ballast, "ab") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
            f.flush()
        except OSError:
            pass
    return ballast


@pytest.fixture
def full_disk(tmp_path):
    """A real 8 MB file system (tmpfs), as a folder; the test fills it with ``fill``."""
    with small_filesystem(tmp_path / "small", "8m") as where:
        yield where
