import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnzoo.data.common import generator
from cnnzoo.data.transforms import (
    BatchAugment, Geometry, channel_stats, lighting_shift, pad_crop_flip, random_resized_boxes, resized_crop,
    scale_jitter_boxes, ten_crop,
)


def images(n=64, c=3, side=32, seed=0):
    """Random images with no zero pixel, so zeros in an output can only be padding."""
    return torch.randint(1, 256, (n, c, side, side), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def find_window(padded, out):
    """(top, left, mirrored) of the window of ``padded`` that ``out`` copies, or None."""
    size = out.shape[-1]
    for top in range(padded.shape[-2] - size + 1):
        for left in range(padded.shape[-1] - size + 1):
            window = padded[:, top:top + size, left:left + size]
            for mirrored in (False, True):
                if torch.equal(window.flip(-1) if mirrored else window, out):
                    return top, left, mirrored
    return None


def test_pad_crop_is_a_shifted_copy_with_zero_borders():
    x = images()
    out = pad_crop_flip(x, 32, 4, generator(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    found = [find_window(p, o) for p, o in zip(padded, out)]
    assert all(f is not None for f in found)
    for (top, left, _), o in zip(found, out):
        zero_rows = max(0, 4 - top) + max(0, top - 4)
        zero_cols = max(0, 4 - left) + max(0, left - 4)
        assert (o == 0).sum() == 3 * (zero_rows * 32 + zero_cols * 32 - zero_rows * zero_cols)
    shifts = {(t, l) for t, l, _ in found}
    assert len(shifts) > 20  # offsets spread over the 9 x 9 possibilities
    mirrored = sum(m for _, _, m in found)
    assert 16 < mirrored < 48  # about half of 64


def test_flip_reverses_columns_and_shift_never_flips():
    x = images(n=200)
    out = pad_crop_flip(x, 32, 0, generator(2))  # no padding: only the flip is random
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped ^ kept).all()) and 70 < int(flipped.sum()) < 130
    never = pad_crop_flip(x, 32, 0, generator(2), flip=False)
    assert torch.equal(never, x)


def test_ten_crop_matches_torchvision():
    x = images(n=3, side=40)
    ours = ten_crop(x, 32)
    assert ours.shape == (3, 10, 3, 32, 32)
    for i in range(3):
        assert torch.equal(ours[i], torch.stack(TF.ten_crop(x[i], [32, 32])))


def test_random_resized_crop_areas_and_aspects_fall_in_range():
    boxes = random_resized_boxes(20_000, 256, 256, generator(3))
    left, top, w, h = boxes.unbind(1)
    area = w * h / 256**2
    aspect = w / h
    assert area.min() >= 0.08 - 0.01 and area.max() <= 1.0
    assert aspect.min() >= 3 / 4 - 0.02 and aspect.max() <= 4 / 3 + 0.02
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= 256).all() and (top + h <= 256).all()
    # Area uniform in [0.08, 1] before rejection: a fair share of small and large crops.
    assert (area < 0.3).float().mean() > 0.15 and (area > 0.7).float().mean() > 0.15
    # Log-aspect uniform: both elongations occur.
    assert (aspect < 0.85).float().mean() > 0.1 and (aspect > 1.18).float().mean() > 0.1


def test_resized_crop_of_whole_image_is_identity_and_mirror_flips():
    x = images(n=4).float()
    whole = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(4, 4)
    mirror = torch.tensor([False, True, False, True])
    out = resized_crop(x, whole, 32, mirror)
    assert torch.allclose(out[0], x[0], atol=1e-3) and torch.allclose(out[1], x[1].flip(-1), atol=1e-3)
    # The top-left quadrant, upsampled 2x: every output pixel of a 2x2 block samples the same neighbourhood.
    quarter = resized_crop(x, torch.tensor([[0.0, 0.0, 16.0, 16.0]]).expand(4, 4), 16, mirror)
    assert torch.allclose(quarter[0], x[0, :, :16, :16], atol=1e-3)


def test_scale_jitter_crops_the_vgg_range():
    boxes = scale_jitter_boxes(5000, 256, 224, generator(4))
    side = boxes[:, 2]
    s = 224 * 256 / side  # the rescaled shorter side S each box stands for
    assert s.min() >= 256 - 1e-3 and s.max() <= 512 + 1e-3 and s.max() > 500 and s.min() < 260
    assert (boxes[:, 0] + side <= 256 + 1e-3).all() and (boxes[:, 1] + side <= 256 + 1e-3).all()


def test_pca_lighting_adds_one_colour_per_image_along_the_eigenvectors():
    x = images(n=400, side=16)
    _, _, eigval, eigvec = channel_stats(x)
    augment = BatchAugment("alexnet", Geometry.natural(16, None), (0.0,) * 3, (1.0,) * 3, eigval, eigvec)
    plain = augment.finish(x)
    lit = augment.finish(x, generator(5))
    shift = lit - plain  # N x 3 x 16 x 16, in [0, 1] pixel units (mean 0, std 1)
    per_image = shift[:, :, :1, :1]
    assert torch.allclose(shift, per_image.expand_as(shift), atol=1e-5)  # constant over pixels
    alpha = (per_image.flatten(1) @ eigvec) / eigval  # coordinates along each eigenvector / its eigenvalue
    assert torch.allclose(lighting_shift(400, eigval, eigvec, generator(5)), per_image.flatten(1), atol=1e-5)
    assert alpha.std(0) == pytest.approx(torch.full((3,), 0.1), rel=0.15)
    assert alpha.mean(0).abs().max() < 0.03


def test_channel_stats_are_the_pixels_mean_std_and_covariance():
    x = images(n=50, side=8)
    mean, std, eigval, eigvec = channel_stats(x)
    pixels = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(mean.double(), pixels.mean(1), atol=1e-6)
    assert torch.allclose(std.double(), pixels.std(1, unbiased=False), atol=1e-6)
    cov = torch.cov(pixels, correction=0)
    assert torch.allclose((eigvec * eigval) @ eigvec.T, cov.float(), atol=1e-6)


@pytest.mark.parametrize("augment", ["none", "shift", "cifar", "alexnet", "inception", "vgg"])
def test_every_augmentation_delivers_normalised_images_at_img_size(augment):
    x = images(n=256, side=6).repeat_interleave(6, -1).repeat_interleave(6, -2)  # 6x6 blocks: resampling keeps std
    mean, std, eigval, eigvec = channel_stats(x)
    batch = BatchAugment(augment, Geometry.resized(32), mean.tolist(), std.tolist(), eigval, eigvec)
    out = batch.train(x, generator(6))
    assert out.shape == (256, 3, 32, 32) and out.dtype == torch.float32
    assert out.mean().abs() < 0.2 and 0.8 < out.std() < 1.2
    assert torch.equal(out, batch.train(x, generator(6)))  # a pure function of the generator's seed
    assert batch.eval(x).shape == (256, 3, 32, 32)
    assert math.isclose(Geometry.resized(224).store, 256)


def test_channel_stats_read_at_most_max_images_evenly_spaced():
    x = torch.zeros(10_001, 1, 1, 1, dtype=torch.uint8)
    x[1::2] = 255  # odd images white: every other image read (10,001 > 10,000 by default) sees only black ones
    assert channel_stats(x)[0].item() == 0.0
    assert channel_stats(x, max_images=10_001)[0].item() == pytest.approx(5000 / 10_001)  # over all, in chunks


@pytest.mark.parametrize("img_size", [64, 20], ids=["up", "down"])
def test_natural_size_images_are_resized_to_img_size_as_torchvision_resizes(img_size):
    """A natural-size set (CIFAR, 32x32) fed to a network at another size: the crops are resized as
    torchvision's antialiased bilinear Resize does, then normalised."""
    x = images(n=8, side=32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    batch = BatchAugment("none", Geometry.natural(32, img_size), mean, std, torch.ones(3), torch.eye(3))
    m, s = torch.tensor(mean)[:, None, None] * 255, torch.tensor(std)[:, None, None] * 255
    expected = (TF.resize(x.float(), [img_size, img_size], antialias=True) - m) / s
    assert torch.allclose(batch.train(x, generator(0)), expected, atol=1e-4)
    assert torch.allclose(batch.eval(x), expected, atol=1e-4)
    ten = BatchAugment("none", Geometry.natural(32, img_size), mean, std, torch.ones(3), torch.eye(3), eval_crops="ten")
    assert ten.eval(x).shape == (8, 10, 3, img_size, img_size)
