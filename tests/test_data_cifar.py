import os
import pickle
import socket
import time

import numpy as np
import pytest
import torch

from cnnzoo.data import DataError, build_data

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_batches(folder, per_batch=6):
    """The CIFAR-10 python batches' layout and format (pickled dicts, N x 3072 uint8 rows), small."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist(), "batch_label": name}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": per_batch}, f, protocol=2)


@pytest.mark.parametrize("where", ["parent", "batches"])
def test_local_cifar10_batches(tmp_path, where):
    write_batches(tmp_path / "cifar-10-batches-py")
    path = tmp_path if where == "parent" else tmp_path / "cifar-10-batches-py"
    data = build_data(f"cifar10:{path}", batch_size=6, augment="none", mean=(0,) * 3, std=(1 / 255,) * 3)
    assert data.classes == CLASSES and (data.num_classes, data.in_chans, data.img_size) == (10, 3, 32)
    assert data.augment == "none" and len(data.train) == 5 and data.test.num_samples == 6
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f)
    x, y = next(iter(data.test.epoch(0)))
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32 x 32.
    assert torch.allclose(x, torch.from_numpy(raw["data"]).float().reshape(6, 3, 32, 32), atol=1e-3)
    assert y.tolist() == raw["labels"]
    assert build_data("cifar10:" + str(path), batch_size=6).augment == "cifar"


def test_a_doctored_batch_cannot_run_code(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": Payload(), "labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR python batch .*refusing posix.system"):
        build_data(f"cifar10:{tmp_path}", batch_size=4)
    assert not marker.exists()


def test_local_path_without_batches_says_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="does not hold the cifar100 python batches .missing train, test, meta"):
        build_data(f"cifar100:{tmp_path}", batch_size=4)


def test_offline_without_a_copy_says_where_to_put_the_files():
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        build_data("cifar10", batch_size=4)  # conftest sets CNNZOO_OFFLINE=1 and a private cache
    message = str(error.value)
    assert time.monotonic() - start < 5
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-py" in message and "cifar10:DIR" in message
    assert "\n" not in message


def test_network_probe_is_quick_and_failing_probe_gives_the_same_advice(monkeypatch):
    asked = []

    def unreachable(address, timeout=None):
        asked.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.delenv("CNNZOO_OFFLINE")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(DataError, match="www.cs.toronto.edu cannot be reached: download .*cifar-100-python.tar.gz"):
        build_data("cifar100", batch_size=4)
    assert asked == [(("www.cs.toronto.edu", 443), 3.0)]


def test_real_cifar10_jpegs(cifar10_jpeg):
    """The CIFAR-10 JPEG folders (a 40-per-class subset): natural 32x32 size, classes from train/, the CIFAR
    statistics, and the worker path delivering exactly the in-memory path's evaluation batches."""
    data = build_data(f"folder:{cifar10_jpeg}", batch_size=100, workers=0)
    assert data.classes == CLASSES and data.img_size == 32 and data.augment == "cifar"
    assert data.train.images.shape == (400, 3, 32, 32) and data.test.num_samples == 400
    assert data.mean == pytest.approx((0.49, 0.48, 0.45), abs=0.04)
    assert data.std == pytest.approx((0.25, 0.24, 0.26), abs=0.03)
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (100, 3, 32, 32) and len(set(y.tolist())) == 10
    files = build_data(f"folder:{cifar10_jpeg}", batch_size=100, workers=0, in_memory=False, mean=data.mean,
                       std=data.std)
    for (a, la), (b, lb) in zip(data.test.epoch(0), files.test.epoch(0)):
        assert torch.equal(a, b) and torch.equal(la, lb)
