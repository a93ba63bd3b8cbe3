"""The papers' augmentations, twice: on whole batches as tensor ops, and per image for DataLoader workers.

Every data set is held as squares of side ``store`` (uint8). Training takes crops of side ``crop`` in those
pixels (or resized crops straight to ``img_size``), evaluation the centre crop or the ten crops; both end in
:meth:`BatchAugment.finish`, which on the target device turns uint8 into normalised float32, resizes to
``img_size`` when the crop is not already that size, and adds AlexNet's lighting noise.

    name        paper                                           training geometry
    none        -                                               centre crop
    shift       (digits: a flip would change the digit)         zero-pad 4, random crop
    cifar       ResNet 4.2, stochastic depth (1512.03385)       zero-pad 4, random crop, flip
    alexnet     AlexNet 4.1 (Krizhevsky et al. 2012)            random crop (224 of 256), flip, PCA lighting
    inception   GoogLeNet 6 (1409.4842), PolyNet                random-resized crop 8%-100%, aspect 3/4-4/3, flip
    vgg         VGG 3.1 (1409.1556)                             scale jitter S in [256, 512], 224 crop, flip,
                                                                PCA lighting ("random RGB colour shift")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

AUGMENTS = ("none", "shift", "cifar", "alexnet", "inception", "vgg")
EVAL_CROPS = ("center", "ten")
CIFAR_PAD = 4  # ResNet 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled"
RRC_SCALE = (0.08, 1.0)  # GoogLeNet 6: "patches ... whose size is distributed evenly between 8% and 100%"
RRC_RATIO = (3 / 4, 4 / 3)  # "... and whose aspect ratio is chosen randomly between 3/4 and 4/3"
LIGHTING_STD = 0.1  # AlexNet 4.1: alpha_i drawn from a Gaussian with mean zero and standard deviation 0.1
VGG_JITTER = (1, 2)  # VGG 3.1: S in [S_min, S_max] = [256, 512], i.e. 1x to 2x the stored side of 256
LIGHTING_AUGMENTS = ("alexnet", "vgg")  # VGG 3.1: "random RGB colour shift (Krizhevsky et al., 2012)"
STORE_RATIO = 256 / 224  # ImageNet convention: images stored (and resized for eval) at 256 for 224 crops


@dataclass(frozen=True)
class Geometry:
    """Sizes of one data set. Natural-size sets (digits, CIFAR, folders of equal small squares) keep their
    images as they are (store == crop); other folders store 256 for a 224 input (crop == img_size)."""

    store: int  # side of the stored square images
    crop: int  # side of training / evaluation crops, in stored pixels
    img_size: int  # side of the delivered images

    @classmethod
    def natural(cls, side: int, img_size: int | None) -> Geometry:
        return cls(side, side, img_size or side)

    @classmethod
    def resized(cls, img_size: int) -> Geometry:
        return cls(round(img_size * STORE_RATIO), img_size, img_size)


# ---- batch transforms: N x C x H x W tensors, randomness from a CPU generator -------------------------------

def pad_crop_flip(x: Tensor, size: int, pad: int, gen: torch.Generator, flip: bool = True) -> Tensor:
    """Random ``size`` crops of ``x`` zero-padded by ``pad`` on every side, each mirrored with probability 1/2.

    Any dtype, N x C x H x W -> N x C x size x size, as one index_select: every output row is a run of
    ``size`` consecutive values in the padded batch (or in its mirror image), so the batch is copied as
    N x C x size runs, which is several times faster on a CPU than a gather of single pixels.
    """
    n, c, h, w = x.shape
    x = F.pad(x, (pad, pad, pad, pad))  # N x C x Hp x Wp, zeros around
    hp, wp = x.shape[-2:]
    top = torch.randint(0, hp - size + 1, (n, 1), generator=gen).to(x.device)
    left = torch.randint(0, wp - size + 1, (n, 1), generator=gen).to(x.device)
    mirror = (torch.rand(n, 1, generator=gen) < 0.5).to(x.device) & flip
    runs = torch.cat([x, x.flip(-1)] if flip else [x]).flatten().unfold(0, size, 1)  # every run of `size` values
    image = torch.arange(n, device=x.device)[:, None] + n * mirror  # N x 1: mirrored crops read the mirror copy
    left = torch.where(mirror, wp - size - left, left)  # a mirrored crop's left edge, in the mirror copy
    row = (image * c)[:, :, None] + torch.arange(c, device=x.device)[None, :, None]  # N x C x 1: (image, channel)
    row = row * hp + (top + torch.arange(size, device=x.device))[:, None, :]  # N x C x size: row in the batch
    return runs.index_select(0, (row * wp + left[:, :, None]).flatten()).view(n, c, size, size)


def center_crop(x: Tensor, size: int) -> Tensor:
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def ten_crop(x: Tensor, size: int) -> Tensor:
    """The four corners and the centre, then the same five of the mirrored image (torchvision's order).

    N x C x H x W -> N x 10 x C x size x size.
    """
    def five(t: Tensor) -> list[Tensor]:
        return [t[..., :size, :size], t[..., :size, -size:], t[..., -size:, :size], t[..., -size:, -size:],
                center_crop(t, size)]

    return torch.stack(five(x) + five(x.flip(-1)), dim=1)


def random_resized_boxes(n: int, height: int, width: int, gen: torch.Generator, scale=RRC_SCALE,
                         ratio=RRC_RATIO, attempts: int = 10) -> Tensor:
    """Boxes (left, top, width, height) in pixels covering ``scale`` of the area with aspect in ``ratio``.

    torchvision's RandomResizedCrop.get_params for a whole batch: ten tries per image, the first that fits
    wins; images where none fits get the centre crop with the aspect clamped into ``ratio``.
    """
    area = height * width * torch.empty(n, attempts).uniform_(*scale, generator=gen)
    aspect = torch.exp(torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen))
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(1, keepdim=True)  # index of the first attempt that fits (0 when none does)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    fallback_w = round(height * ratio[1]) if width / height > ratio[1] else width
    fallback_h = round(width / ratio[0]) if width / height < ratio[0] else height
    found = fits.any(1)
    w = torch.where(found, w, fallback_w)
    h = torch.where(found, h, fallback_h)
    left = torch.where(found, (torch.rand(n, generator=gen) * (width - w + 1)).floor(), (width - w) // 2)
    top = torch.where(found, (torch.rand(n, generator=gen) * (height - h + 1)).floor(), (height - h) // 2)
    return torch.stack([left, top, w, h], dim=1)


def scale_jitter_boxes(n: int, side: int, crop: int, gen: torch.Generator, jitter=VGG_JITTER) -> Tensor:
    """VGG's scale jitter as boxes on a ``side`` square: rescale to S uniform in [jitter] x side, then take a
    random ``crop`` square; in stored pixels that crop is a square of side crop * side / S."""
    s = torch.randint(jitter[0] * side, jitter[1] * side + 1, (n,), generator=gen).float()
    box = crop * side / s
    left = torch.rand(n, generator=gen) * (side - box)
    top = torch.rand(n, generator=gen) * (side - box)
    return torch.stack([left, top, box, box], dim=1)


def resized_crop(x: Tensor, boxes: Tensor, size: int, mirror: Tensor) -> Tensor:
    """Crop each image to its box (left, top, width, height in pixels), resize to ``size`` (bilinear) and mirror
    where asked: one affine grid_sample for the batch. N x C x H x W float -> N x C x size x size.

    Bilinear without antialiasing: boxes shrink by at most store / img_size (256 / 224) in the specs cnnzoo
    builds, too little to alias; torchvision's per-image resize antialiases, so the two differ slightly.
    """
    n, c, h, w = x.shape
    left, top, bw, bh = boxes.to(x.device, torch.float32).unbind(1)
    theta = torch.zeros(n, 2, 3, device=x.device)
    # grid_sample's normalised coordinates: -1 is the left edge of the first pixel, +1 the right edge of the last.
    theta[:, 0, 0] = bw / w * (1 - 2 * mirror.to(x.device).float())
    theta[:, 0, 2] = (2 * left + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * top + bh) / h - 1
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def lighting_shift(n: int, eigval: Tensor, eigvec: Tensor, gen: torch.Generator, std: float = LIGHTING_STD) -> Tensor:
    """AlexNet's PCA colour noise: per image, sum_i alpha_i lambda_i p_i with alpha_i ~ N(0, std^2).

    ``eigvec`` holds the eigenvectors p_i of the training pixels' channel covariance as columns. Returns
    N x C: one constant colour added to every pixel of each image.
    """
    alpha = torch.randn(n, eigval.numel(), generator=gen) * std
    return (alpha * eigval) @ eigvec.T


def channel_stats(images: Tensor, max_images: int = 10_000) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-channel mean and std, and the eigenvalues / eigenvectors (columns) of the channel covariance, of
    uint8 images N x C x H x W scaled to [0, 1]; over at most ``max_images`` evenly spaced images."""
    step = max(1, math.ceil(len(images) / max_images))
    total, outer, count = 0, 0, 0
    for chunk in images[::step].split(1000):
        pixels = chunk.to("cpu", torch.float64).div_(255).transpose(0, 1).reshape(chunk.shape[1], -1)  # C x P
        total = total + pixels.sum(1)
        outer = outer + pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    eigval, eigvec = torch.linalg.eigh(cov)
    return mean.float(), cov.diagonal().sqrt().float(), eigval.clamp(min=0).float(), eigvec.float()


class BatchAugment:
    """Training and evaluation transforms of one data set, on whole batches on the batch's device."""

    def __init__(self, augment: str, geometry: Geometry, mean, std, eigval: Tensor, eigvec: Tensor,
                 eval_crops: str = "center"):
        self.augment, self.g, self.eval_crops = augment, geometry, eval_crops
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.eigval, self.eigvec = eigval, eigvec

    def train(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """uint8 N x C x store x store -> float32 N x C x img_size x img_size, normalised."""
        g, n = self.g, len(x)
        if self.augment in ("inception", "vgg"):
            boxes = (random_resized_boxes(n, g.store, g.store, gen) if self.augment == "inception"
                     else scale_jitter_boxes(n, g.store, g.crop, gen))
            mirror = torch.rand(n, generator=gen) < 0.5
            x = resized_crop(x.float(), boxes, g.img_size, mirror)  # already img_size, values still 0..255
        elif self.augment == "none":
            x = center_crop(x, g.crop)
        else:
            pad = CIFAR_PAD if self.augment in ("shift", "cifar") else 0
            x = pad_crop_flip(x, g.crop, pad, gen, flip=self.augment != "shift")
        return self.finish(x, gen if self.augment in LIGHTING_AUGMENTS else None)

    def eval(self, x: Tensor) -> Tensor:
        """uint8 N x C x store x store -> the centre crop (N x C x S x S) or ten crops (N x 10 x C x S x S)."""
        return self.finish(self.eval_geometry(x))

    def eval_geometry(self, x: Tensor) -> Tensor:
        if self.eval_crops == "center":
            return center_crop(x, self.g.crop)
        if self.g.store == self.g.crop:  # corners of a natural-size image would all be the image itself:
            x = F.pad(x, (CIFAR_PAD,) * 4)  # take them from the image padded as in training (a 4-pixel shift)
        return ten_crop(x, self.g.crop)

    def finish(self, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """To float32, resized to img_size, plus lighting noise when ``gen`` is given, normalised.

        Pixels stay in 0..255 until the last step (mean and std are for [0, 1] pixels, hence the 255s).
        """
        shape = x.shape
        x = x.reshape(-1, *shape[-3:]).float()
        if x.shape[-1] != self.g.img_size:
            x = F.interpolate(x, size=(self.g.img_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        if gen is not None:
            x += 255 * lighting_shift(len(x), self.eigval, self.eigvec, gen).to(x.device)[:, :, None, None]
        mean, std = 255 * self.mean.to(x.device), 255 * self.std.to(x.device)
        x = x.sub_(mean[:, None, None]).div_(std[:, None, None])
        return x.reshape(*shape[:-2], *x.shape[-2:])


# ---- per-image transforms for DataLoader workers: PIL RGB in, uint8 tensor out -----------------------------

def store_steps(g: Geometry) -> list:
    """How an image becomes a stored square: shorter side resized to ``store`` (antialiased), centre cropped."""
    return [v2.Resize(g.store), v2.CenterCrop(g.store), v2.PILToTensor()]


def _stack(crops: tuple[Tensor, ...]) -> Tensor:
    return torch.stack(crops)


def sample_transform(augment: str, g: Geometry, *, train: bool, eval_crops: str = "center") -> v2.Compose:
    """The same geometry as :class:`BatchAugment`, one image at a time with torchvision transforms v2.

    Random-resized crop and scale jitter work on the whole decoded image here (the in-memory path on its
    stored centre square). Lighting and normalisation are left to :meth:`BatchAugment.finish`, on the device.
    """
    store = store_steps(g)
    flip = v2.RandomHorizontalFlip()
    if not train:
        if eval_crops == "center":
            return v2.Compose(store + [v2.CenterCrop(g.crop)])
        pad = [v2.Pad(CIFAR_PAD)] if g.store == g.crop else []
        return v2.Compose(store + pad + [v2.TenCrop(g.crop), _stack])
    steps = {
        "none": store + [v2.CenterCrop(g.crop)],
        "shift": store + [v2.RandomCrop(g.crop, padding=CIFAR_PAD)],
        "cifar": store + [v2.RandomCrop(g.crop, padding=CIFAR_PAD), flip],
        "alexnet": store + [v2.RandomCrop(g.crop), flip],
        "inception": [v2.RandomResizedCrop(g.img_size, scale=RRC_SCALE, ratio=RRC_RATIO), v2.PILToTensor(), flip],
        "vgg": [v2.RandomResize(VGG_JITTER[0] * g.store, VGG_JITTER[1] * g.store + 1), v2.RandomCrop(g.crop),
                v2.PILToTensor(), flip],
    }
    return v2.Compose(steps[augment])
