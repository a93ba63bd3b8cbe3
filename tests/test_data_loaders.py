import random

import pytest
import torch
from conftest import make_folder

from cnnzoo.data import DataError, build_data
from cnnzoo.data.loaders import shard_batches
from cnnzoo.data.sources import load_digits


def batches(loader, epoch, start_batch=0):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start_batch)]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


# sha256 of (train images, train labels, test images, test labels) as load_digits made them from scikit-learn's
# copy (load_digits() + train_test_split(test_size=0.2, stratify=target, random_state=0)) before the arrays
# moved into the package: the shipped file must give exactly the same pixels and split.
DIGITS_SHA256 = "c3266c7740f2b357dfdb313683279f7a5438d1f1b172518655e4dc0a8b643a33"


def test_digits_are_the_uci_digits_with_a_fixed_stratified_split():
    import hashlib
    from importlib import resources

    import numpy as np

    digits = load_digits()
    assert digits.train_images.shape == (1437, 1, 32, 32) and digits.test_images.shape == (360, 1, 32, 32)
    assert digits.train_images.dtype == torch.uint8 and digits.train_images.max() == 255
    per_class = torch.bincount(digits.test_labels, minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # 20% of every class's ~180 images
    sha = hashlib.sha256()
    for t in (digits.train_images, digits.train_labels, digits.test_images, digits.test_labels):
        sha.update(t.numpy().tobytes())
    assert sha.hexdigest() == DIGITS_SHA256
    # Each image, averaged back over 4x4 blocks, is nearest to an original 8x8 digit of its own label.
    with np.load(resources.files("cnnzoo.data") / "digits.npz") as z:
        original = torch.from_numpy(z["images"].astype(np.float32)).flatten(1) * 255 / 16
        target = torch.from_numpy(z["labels"].astype(np.int64))
        assert sorted(np.concatenate([z["train"], z["test"]]).tolist()) == list(range(1797))
    ours = torch.cat([digits.train_images, digits.test_images]).float()
    small = torch.nn.functional.avg_pool2d(ours, 4).flatten(1)  # N x 64
    nearest = torch.cdist(small, original).argmin(1)
    assert torch.equal(target[nearest], torch.cat([digits.train_labels, digits.test_labels]))


def test_digits_data_follows_the_contract():
    data = build_data("digits", batch_size=128)
    assert (data.num_classes, data.in_chans, data.img_size, data.augment) == (10, 1, 32, "shift")
    assert data.classes == [str(d) for d in range(10)] and data.skipped == []
    assert len(data.train) == 11 and data.train.num_samples == 11 * 128  # drops the last partial batch
    assert len(data.test) == 3 and data.test.num_samples == 360
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (128, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    test = torch.cat([x for x, _ in data.test.epoch(0)])
    assert abs(test.mean()) < 0.1 and 0.9 < test.std() < 1.1  # normalised with the training set's own stats


def test_batches_are_a_pure_function_of_seed_and_epoch():
    one = build_data("digits", batch_size=400, seed=3, augment="cifar")
    two = build_data("digits", batch_size=400, seed=3, augment="cifar")
    assert same(batches(one.train, 2), batches(two.train, 2))
    assert not same(batches(one.train, 2), batches(one.train, 3))
    other = build_data("digits", batch_size=400, seed=4, augment="cifar")
    assert not same(batches(one.train, 2), batches(other.train, 2))


@pytest.mark.parametrize("augment", ["cifar", "inception", "alexnet"])
def test_start_batch_gives_exactly_the_tail_of_the_epoch(augment):
    data = build_data("digits", batch_size=200, seed=1, augment=augment)
    full = batches(data.train, 5)
    assert len(full) == 7 and same(batches(data.train, 5, start_batch=4), full[4:])
    assert batches(data.train, 5, start_batch=len(full)) == []


@pytest.mark.parametrize("train", [True, False])
def test_shards_are_disjoint_with_equal_batch_counts(train):
    rng = random.Random(0)
    for _ in range(200):
        n, world, batch = rng.randint(8, 300), rng.randint(1, 8), rng.randint(1, 40)
        if n < world:
            continue
        order = torch.randperm(n)
        shards = [shard_batches(order, batch, train, rank, world) for rank in range(world)]
        assert len({len(s) for s in shards}) == 1, (n, world, batch)
        seen = torch.cat([b for s in shards for b in s])
        assert len(seen) == len(set(seen.tolist()))  # disjoint
        if train:
            assert len({len(b) for s in shards for b in s}) == 1  # every batch the same shape
            per_rank = n // world
            assert len(seen) == world * (per_rank // batch * batch or per_rank)
        else:
            assert sorted(seen.tolist()) == list(range(n))  # every test sample exactly once


def test_ddp_ranks_split_the_test_set_and_train_together():
    whole = torch.cat([x for x, _ in build_data("digits", batch_size=50, augment="none").test.epoch(0)])
    parts, lengths = [], set()
    for rank in range(3):
        data = build_data("digits", batch_size=50, augment="none", rank=rank, world_size=3)
        parts += [x for x, _ in data.test.epoch(0)]
        lengths.add((len(data.train), len(data.test)))
    assert len(lengths) == 1
    ours = torch.cat(parts)
    assert ours.shape == whole.shape
    key = lambda t: sorted(t.flatten(1).sum(1).tolist())  # noqa: E731  (order differs, content must not)
    assert key(ours) == pytest.approx(key(whole))


def test_worker_path_is_deterministic_and_resumable(tmp_path):
    root = make_folder(tmp_path / "f", classes=("a", "b", "c"), per_class=(10, 4), size=(48, 40))
    kw = dict(batch_size=4, img_size=32, in_memory=False, workers=0, seed=2)
    data = build_data(str(root), augment="inception", **kw)
    assert data.img_size == 32 and data.num_classes == 3 and len(data.train) == 7
    full = batches(data.train, 1)
    assert full[0][0].shape == (4, 3, 32, 32)
    assert same(batches(data.train, 1, start_batch=3), full[3:])
    assert same(batches(build_data(str(root), augment="inception", **kw).train, 1), full)
    assert not same(batches(data.train, 2), full)
    two_workers = build_data(str(root), augment="inception", **dict(kw, workers=2))
    assert same(batches(two_workers.train, 1), full)  # per-image seeds: the worker count changes nothing
    x, _ = next(iter(build_data(str(root), eval_crops="ten", **kw).test.epoch(0)))
    assert x.shape == (4, 10, 3, 32, 32)


def test_worker_and_memory_paths_agree_on_evaluation(tmp_path):
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=(5, 5), size=(24, 24))
    kw = dict(batch_size=4, workers=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    memory = build_data(f"folder:{root}", in_memory=True, **kw)
    files = build_data(f"folder:{root}", in_memory=False, **kw)
    assert memory.img_size == files.img_size == 24 and memory.augment == "cifar"
    assert same(batches(memory.test, 0), batches(files.test, 0))
    for crops in ("ten",):
        a = build_data(str(root), in_memory=True, eval_crops=crops, **kw)
        b = build_data(str(root), in_memory=False, eval_crops=crops, **kw)
        assert same(batches(a.test, 0), batches(b.test, 0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch size must be at least 1"),
    (dict(batch_size=8, augment="mixup"), "unknown augmentation 'mixup'; choose from auto, none"),
    (dict(batch_size=8, eval_crops="five"), "unknown eval crops 'five'"),
    (dict(batch_size=8, rank=2, world_size=2), "rank 2 is outside 0..1"),
    (dict(batch_size=8, mean=(0.5, 0.5, 0.5)), "need one value per channel: this data set has 1"),
])
def test_bad_arguments_are_one_clear_error(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_data("digits", **kwargs)


def test_unknown_spec_names_the_valid_ones():
    with pytest.raises(DataError, match="unknown data 'imagenette': give digits, cifar10"):
        build_data("imagenette", batch_size=8)
