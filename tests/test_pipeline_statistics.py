"""What each augmentation preset really does, measured from the configured pipeline's output.

Every test builds the data the way training does (``build_data`` on a folder, both the in-memory path and the
DataLoader-worker path), runs many samples with a fixed seed, and reads each parameter back from images whose
content reveals the transform: red encodes the source column, green the source row, so a delivered crop tells
where it came from, at what scale, and whether it was mirrored. Bounds are the papers' (named per test) and the
statistical ones are binomial / normal bounds at about 4.5 sigma, so a wrong constant fails and chance does not.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.data import build_data

SAMPLES = 2000  # in-memory path; the worker path decodes every sample with PIL, so it gets fewer (WORKER_SAMPLES)
WORKER_SAMPLES = 400
RESIZED = 72  # side of the images of the ImageNet-like folders (> 64: stored at round(63 * 256 / 224) = 72)
IMG_SIZE = 63  # delivered side there: 63 of 72 is 224 of 256


def ramp(side: int, fn, blue: int = 128) -> np.ndarray:
    """An RGB image: red = fn(column), green = fn(row), blue constant (two blues make the channel's std > 0)."""
    values = np.array([fn(i) for i in range(side)], dtype=np.uint8)
    image = np.full((side, side, 3), blue, dtype=np.uint8)
    image[:, :, 0] = values[None, :]
    image[:, :, 1] = values[:, None]
    return image


def linear(i: int) -> int:
    return 8 + 3 * i  # 8 .. 221 over 72 pixels: never 0, so zero padding shows


def square(i: int) -> int:
    return round(i * i / 24)  # differences grow with i: the position shows even under a constant colour shift


def folder(root: Path, images: list[np.ndarray], per_image: int) -> Path:
    """An ImageFolder tree: class c holds ``per_image`` PNG copies of images[c] (lossless), train and val."""
    for split in ("train", "val"):
        for c, image in enumerate(images):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(per_image if split == "train" else 1):
                Image.fromarray(image).save(root / split / f"c{c}" / f"{i:04d}.png")
    return root


def delivered(root: Path, augment: str, in_memory: bool, img_size=None, samples=None, batch=100):
    """``samples`` (default: SAMPLES in memory, WORKER_SAMPLES with workers) training images as training gets them, un-normalised back to 0..255: (N x 3 x S x S, labels)."""
    data = build_data(f"folder:{root}", batch_size=batch, img_size=img_size, augment=augment, workers=0,
                      in_memory=in_memory, cache=False, seed=0)
    mean = torch.tensor(data.mean)[:, None, None] * 255
    std = torch.tensor(data.std)[:, None, None] * 255
    samples = samples or (SAMPLES if in_memory else WORKER_SAMPLES)
    xs, ys = [], []
    epoch = 0
    while sum(len(x) for x in xs) < samples:
        for x, y in data.train.epoch(epoch):
            xs.append(x * std + mean)
            ys.append(y)
        epoch += 1
    return torch.cat(xs)[:samples].double(), torch.cat(ys)[:samples]


def flips(x: torch.Tensor) -> torch.Tensor:
    """Mirrored samples: red falls from left to right (read beside the centre, which always shows content)."""
    c = x.shape[-1] // 2
    return x[:, 0, :, c + 2].mean(1) < x[:, 0, :, c - 2].mean(1)


def assert_fair_coin(hits: torch.Tensor) -> None:
    n, k = len(hits), int(hits.sum())
    assert abs(k - n / 2) < 4.5 * math.sqrt(n / 4), f"{k} of {n} mirrored"


def assert_uniform_integers(values: torch.Tensor, low: int, high: int) -> None:
    """Every integer of [low, high] turns up about equally often, and nothing else does."""
    assert values.min() == low and values.max() == high
    counts = torch.bincount((values - low).long(), minlength=high - low + 1).double()
    p = 1 / (high - low + 1)
    n = len(values)
    assert ((counts - n * p).abs() < 4.5 * math.sqrt(n * p * (1 - p))).all(), counts.tolist()


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """32x32 images (a natural-size folder, as CIFAR): the linear coordinate ramp."""
    return folder(tmp_path_factory.mktemp("small"), [ramp(32, linear, 100), ramp(32, linear, 160)], per_image=100)


@pytest.fixture(scope="module")
def large_root(tmp_path_factory) -> Path:
    """72x72 images (stored at their own size for IMG_SIZE 63): the linear coordinate ramp."""
    return folder(tmp_path_factory.mktemp("large"), [ramp(RESIZED, linear, 100), ramp(RESIZED, linear, 160)],
                  per_image=100)


def source_origin(x: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset (dx, dy) of each crop's first column / row in the unpadded image, from a pixel of content."""
    r, g = x[:, 0].round(), x[:, 1].round()
    flipped = flips(x)
    # the centre pixel always shows content (offsets stay within the padding)
    c = x.shape[-1] // 2
    col = (r[:, c, c] - 8) / 3  # source column of output column c
    row = (g[:, c, c] - 8) / 3
    dx = torch.where(flipped, -(col + c - (x.shape[-1] - 1)), col - c)  # mirrored: output column c is the
    dy = row - c  # source column counted from the crop's right edge
    return dx.round(), dy.round()


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
def test_cifar_pads_4_crops_and_flips_half(small_root, in_memory):
    """ResNet 4.2 / stochastic depth: zero-pad 4, random 32x32 crop (offsets -4..4, uniform), flip with p 1/2."""
    x, _ = delivered(small_root, "cifar", in_memory)
    assert x.shape[1:] == (3, 32, 32)
    dx, dy = source_origin(x, pad=4)
    assert_uniform_integers(dx + 4, 0, 8)
    assert_uniform_integers(dy + 4, 0, 8)
    assert_fair_coin(flips(x))
    # padding is zeros, exactly as wide as the offset: a crop shifted by dy > 0 rows down has dy zero rows at the
    # bottom (rows past the image), one shifted by dy < 0 has -dy zero rows at the top
    zero_rows = (x[:, 1].round() == 0).all(-1).sum(-1)
    assert torch.equal(zero_rows, dy.abs().long())


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
def test_shift_pads_4_and_never_flips(small_root, in_memory):
    """Digits: the same +-4 pixel translation, and no mirror (a mirrored digit is another digit or none)."""
    x, _ = delivered(small_root, "shift", in_memory, samples=300)
    dx, dy = source_origin(x, pad=4)
    assert not flips(x).any()
    assert dx.min() == -4 and dx.max() == 4 and dy.min() == -4 and dy.max() == 4


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
def test_none_is_the_centre_crop_unchanged(small_root, in_memory):
    x, labels = delivered(small_root, "none", in_memory, samples=200)
    sources = torch.stack([torch.from_numpy(ramp(32, linear, blue)).permute(2, 0, 1) for blue in (100, 160)])
    assert torch.equal(x.round(), sources[labels].double())


def box_from_ramps(x: torch.Tensor, border: int = 3) -> tuple[torch.Tensor, ...]:
    """Width, height, left and top, in source pixels, of the box each output was resampled from: the slope of
    red along the row (green along the column), fitted away from the edges, against the ramp's 3 per source
    pixel; the box's edge from the fitted line's value at the output's edge (mirrored crops: the right edge)."""
    s = x.shape[-1]
    j = torch.arange(border, s - border, dtype=torch.float64)
    centre = j.mean()
    j = j - centre
    r = x[:, 0, border:-border, border:-border].mean(1)  # N x columns
    g = x[:, 1, border:-border, border:-border].mean(2)  # N x rows
    slope_r = (r * j).sum(1) / (j * j).sum()
    slope_g = (g * j).sum(1) / (j * j).sum()
    w, h = slope_r.abs() / 3 * s, slope_g.abs() / 3 * s
    # source coordinate (in pixel units, 0 = the first pixel's left edge) at the output's centre, minus half a box
    mid_r = (r.mean(1) - 8) / 3 + 0.5
    mid_g = (g.mean(1) - 8) / 3 + 0.5
    return w, h, mid_r - w / 2, mid_g - h / 2


def assert_spread_uniformly(position: torch.Tensor, room: torch.Tensor) -> None:
    """Crop positions fill the free room evenly: position / room is uniform on [0, 1] where the room is ample."""
    assert (position > -0.6).all() and (position < room + 0.6).all()  # inside the image, up to the fit's rounding
    u = (position / room)[room >= 8]
    assert len(u) > 100
    assert u.min() < 0.1 and u.max() > 0.9 and abs(u.mean().item() - 0.5) < 4.5 * 0.29 / math.sqrt(len(u)) + 0.02


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
def test_inception_crops_8_to_100_percent_with_aspect_3_4_to_4_3(large_root, in_memory):
    """GoogLeNet 6 (and PolyNet, Xception): crops of 8%-100% of the area, aspect ratio 3/4-4/3, flips."""
    x, _ = delivered(large_root, "inception", in_memory, img_size=IMG_SIZE)
    assert x.shape[1:] == (3, IMG_SIZE, IMG_SIZE)
    w, h, left, top = box_from_ramps(x)
    area, aspect = w * h / RESIZED**2, w / h
    tol = 0.06  # pixel rounding of the boxes and the fit
    assert area.min() > 0.08 * (1 - tol) and area.max() < 1 + tol
    assert aspect.min() > 3 / 4 * (1 - tol) and aspect.max() < 4 / 3 * (1 + tol)
    # the ranges are used, not only respected: small and large crops, both elongations
    assert area.min() < 0.12 and area.max() > 0.9
    assert aspect.min() < 0.8 and aspect.max() > 1.25
    # area is drawn uniformly from [0.08, 1] (first fitting try): its median sits near the middle
    assert 0.45 < area.median() < 0.65
    # a box as wide (as tall) as the image fits: about 2 % of draws take the full width
    assert (w.round() == RESIZED).any() and (h.round() == RESIZED).any()
    assert_spread_uniformly(left, RESIZED - w)
    assert_spread_uniformly(top, RESIZED - h)
    assert_fair_coin(flips(x))


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
def test_vgg_scale_jitter_s_in_256_to_512(large_root, in_memory):
    """VGG 3.1: the image is rescaled to a shorter side S uniform in [256, 512], a 224 crop taken and flipped:
    a crop spans 224 * side / S source pixels, so S (in the paper's 256-based units) = 256 * 63 / box side."""
    x, _ = delivered(large_root, "vgg", in_memory, img_size=IMG_SIZE)
    w, h, left, top = box_from_ramps(x)
    assert torch.allclose(w, h, rtol=0.03)  # square crops: isotropic rescaling
    s = 256 * IMG_SIZE / ((w + h) / 2)
    stored_s = (RESIZED * IMG_SIZE / ((w + h) / 2)).round()  # S in stored pixels: a whole number, 72..144
    if in_memory:  # exact boxes: every one of 72..144 drawn about equally often
        assert_uniform_integers(stored_s - RESIZED, 0, RESIZED)
    else:  # the workers resize the image itself to S: both ends are reached
        assert stored_s.min() == RESIZED and stored_s.max() == 2 * RESIZED
    # (positions are measured below on the boxes themselves: the lighting shift blurs them in the output)
    assert s.min() > 256 * 0.98 and s.max() < 512 * 1.02
    assert s.min() < 270 and s.max() > 490
    assert 360 < s.median() < 410  # uniform: the median is near 384
    assert_fair_coin(flips(x))


def test_alexnet_crops_63_of_72_and_flips(tmp_path):
    """AlexNet 4.1: random 224 crops of the 256 images (here 63 of 72: offsets 0..9), mirrored with p 1/2.
    The red / green ramps are quadratic, so a crop's origin shows through the lighting's constant shift."""
    root = folder(tmp_path, [ramp(RESIZED, square, 100), ramp(RESIZED, square, 160)], per_image=100)
    x, _ = delivered(root, "alexnet", True, img_size=IMG_SIZE, samples=1000)
    assert x.shape[1:] == (3, IMG_SIZE, IMG_SIZE)
    flipped = flips(x)
    assert_fair_coin(flipped)
    # square(i + 62) - square(i) = 62 (2i + 62) / 24 for the first output column's source column i
    span_r = (x[:, 0, :, -1] - x[:, 0, :, 0]).mean(1).abs()
    span_g = (x[:, 1, -1, :] - x[:, 1, 0, :]).mean(1)
    left = ((span_r * 24 / 62 - 62) / 2).round()
    top = ((span_g * 24 / 62 - 62) / 2).round()
    assert_uniform_integers(left, 0, RESIZED - IMG_SIZE)
    assert_uniform_integers(top, 0, RESIZED - IMG_SIZE)


COLOURS = np.array([[200, 40, 40], [40, 200, 60], [50, 60, 210], [180, 180, 40]], dtype=np.float64)


@pytest.mark.parametrize("augment, lit, in_memory", [
    ("alexnet", True, True), ("alexnet", True, False), ("vgg", True, True), ("vgg", True, False),
    ("inception", False, True), ("none", False, True), ("inception", False, False)])
def test_pca_lighting_std_01(tmp_path, augment, lit, in_memory):
    """AlexNet 4.1: each image gets sum_i alpha_i lambda_i p_i added to every pixel, alpha_i ~ N(0, 0.1^2), with
    lambda_i, p_i the eigenvalues / eigenvectors of the training pixels' RGB covariance. VGG 3.1 uses the same
    "random RGB colour shift"; inception and none add nothing. Flat-colour images: the shift is out - colour."""
    images = [np.broadcast_to(c.astype(np.uint8), (RESIZED, RESIZED, 3)).copy() for c in COLOURS]
    root = folder(tmp_path, images, per_image=25)
    x, labels = delivered(root, augment, in_memory, img_size=IMG_SIZE, samples=None if lit else 100)
    shift = x - torch.from_numpy(COLOURS)[labels][:, :, None, None]
    per_image = shift.mean((2, 3))  # N x 3
    assert (shift - per_image[:, :, None, None]).abs().max() < 0.05  # one colour per image
    if not lit:
        assert per_image.abs().max() < 0.05
        return
    # the PCA of the training pixels, by hand: four colours, equally many pixels each, in [0, 1]
    pixels = COLOURS / 255
    cov = (pixels - pixels.mean(0)).T @ (pixels - pixels.mean(0)) / len(pixels)
    eigval, eigvec = np.linalg.eigh(cov)
    alpha = (per_image.numpy() / 255) @ eigvec / eigval  # N x 3: the alpha_i of each image
    n = len(alpha)
    std = alpha.std(0)
    assert (np.abs(std - 0.1) < 4.5 * 0.1 / math.sqrt(2 * n)).all(), std  # the sample std's spread: s / sqrt(2n)
    assert (np.abs(alpha.mean(0)) < 4.5 * 0.1 / math.sqrt(n)).all()


def test_imagenet_folders_store_256_for_224_crops():
    """AlexNet 4.1 / VGG / ResNet: images rescaled to 256 (shorter side), 224 crops; other sizes keep the ratio."""
    from cnnzoo.data.transforms import Geometry

    assert Geometry.resized(224) == Geometry(256, 224, 224)
    assert Geometry.resized(IMG_SIZE) == Geometry(RESIZED, IMG_SIZE, IMG_SIZE)
    assert Geometry.resized(299).store == 342  # 299 * 256 / 224 = 341.7


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "workers"])
@pytest.mark.parametrize("size", ["natural", "resized"])
def test_eval_crops_centre_and_ten(small_root, large_root, in_memory, size):
    """Evaluation: the centre crop, or AlexNet's ten (four corners and the centre, then the same of the mirror
    image). Natural-size images (CIFAR) take the corners of the image padded by 4, as training shifts it.
    Expected source column / row of each crop's centre pixel, worked out by hand for the crop boxes."""
    root, img_size, c = (small_root, None, 16) if size == "natural" else (large_root, IMG_SIZE, 31)
    if size == "natural":  # padded side 40, crop 32: corners at 0 and 8, centre 4; source = padded - 4
        cols = [12, 20, 12, 20, 16] + [19, 11, 19, 11, 15]  # mirrored: source col = 35 - left - 16
        rows = [12, 12, 20, 20, 16] * 2
        centre = (16, 16)
    else:  # stored 72, crop 63: corners at 0 and 9, centre 4
        cols = [31, 40, 31, 40, 35] + [40, 31, 40, 31, 36]  # mirrored: source col = 71 - left - 31
        rows = [31, 31, 40, 40, 35] * 2
        centre = (35, 35)
    for crops, expected_cols, expected_rows in (("ten", cols, rows), ("center", [centre[0]], [centre[1]])):
        data = build_data(f"folder:{root}", batch_size=2, img_size=img_size, augment="cifar", eval_crops=crops,
                          workers=0, in_memory=in_memory, cache=False)
        mean = torch.tensor(data.mean)[:, None, None] * 255
        std = torch.tensor(data.std)[:, None, None] * 255
        x, _ = next(iter(data.test.epoch(0)))
        x = (x * std + mean).double()
        x = x.reshape(-1, len(expected_cols), *x.shape[-3:])[0]  # one image's crops
        assert x.shape[-1] == (img_size or 32)
        assert ((x[:, 0, c, c] - 8) / 3).round().tolist() == expected_cols
        assert ((x[:, 1, c, c] - 8) / 3).round().tolist() == expected_rows
        assert flips(x).tolist() == [False] * 5 + [True] * 5 if crops == "ten" else [False]


@pytest.mark.parametrize("height, width", [(10, 100), (100, 10), (20, 30), (30, 20), (2000, 3600)])
def test_random_resized_boxes_fall_back_to_torchvisions_centre_crop(height, width):
    """When no try fits (an image far from the aspect range, crops near the whole area), the box is
    torchvision's fallback: the centre crop with the aspect clamped into [3/4, 4/3]."""
    from torchvision.transforms import RandomResizedCrop

    from cnnzoo.data.transforms import random_resized_boxes

    # boxes larger than the image never fit: (2000, 3600) has an aspect inside the range, so the fallback is whole
    scale = (0.999, 1.0) if height / width in (0.1, 10.0) else (1.01, 1.02)
    ratio = (3 / 4, 4 / 3) if height / width in (0.1, 10.0) else (1.6, 2.0)
    boxes = random_resized_boxes(4, height, width, torch.Generator().manual_seed(0), scale=scale, ratio=ratio)
    top, left, h, w = RandomResizedCrop.get_params(torch.zeros(1, height, width), list(scale), list(ratio))
    for box in boxes.tolist():
        assert box == [left, top, w, h]


def test_scale_jitter_boxes_are_placed_uniformly():
    """VGG's crop of the rescaled image is anywhere in it: positions uniform over the free room, boxes inside."""
    from cnnzoo.data.transforms import scale_jitter_boxes

    boxes = scale_jitter_boxes(SAMPLES, RESIZED, IMG_SIZE, torch.Generator().manual_seed(0)).double()
    left, top, w, h = boxes.unbind(1)
    assert torch.equal(w, h) and w.min() >= IMG_SIZE / 2 and w.max() <= IMG_SIZE
    assert_spread_uniformly(left, RESIZED - w)
    assert_spread_uniformly(top, RESIZED - h)


def test_each_image_falls_back_alone():
    """Per image: a box that fits is kept, one that does not gets the fallback (here the whole square)."""
    from cnnzoo.data.transforms import random_resized_boxes

    boxes = random_resized_boxes(400, 50, 50, torch.Generator().manual_seed(0), scale=(0.5, 1.0), attempts=1)
    left, top, w, h = boxes.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= 50).all() and (top + h <= 50).all()
    whole = (w == 50) & (h == 50)
    assert 50 < whole.sum() < 350  # about half the single tries miss
    assert (left[whole] == 0).all() and (top[whole] == 0).all()


def test_sample_transform_evaluates_on_the_centre_crop_by_default():
    from cnnzoo.data.transforms import Geometry, sample_transform

    image = Image.fromarray(ramp(RESIZED, linear))
    out = sample_transform("none", Geometry.resized(IMG_SIZE), train=False)(image)
    assert out.shape == (3, IMG_SIZE, IMG_SIZE) and out[0, 0, 0] == linear(4) and out[1, 0, 0] == linear(4)
