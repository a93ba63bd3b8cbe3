"""Published weights: which file each model can load, where it lives, and how it was evaluated.

Every entry is one released file, named timm's way (``resnet50.tv_in1k``): the
model, a tag for the release, the library that publishes it (its state dict
is that library's layout, converted on load by ``import_weights``), where to
get it, its licence, and the preprocessing and accuracy published with that
exact file. The first tag of a model is what ``pretrained=True`` loads.

Files come through the standard caches, so nothing is stored twice:

- URL weights (torchvision, pretrainedmodels, timm's GitHub releases) live in
  torch.hub's ``$TORCH_HOME/hub/checkpoints/`` under the URL's file name, where
  torchvision, timm and pretrainedmodels also put them. As in torch.hub, a
  download is checked against the hash prefix in its name
  (``resnet18-f37072fd.pth``); a file already there is trusted as it is.
- Hugging Face Hub weights (timm's ``timm/NAME.TAG`` repositories) live in the
  Hub's own cache and are read with ``huggingface_hub`` (``pip install
  cnnzoo[hub]``), also offline. A copy placed by hand in the torch.hub folder
  as ``NAME.TAG.safetensors`` is found too.

Tags tv_in1k / tv2_in1k are torchvision's IMAGENET1K_V1 / _V2 (timm's names for
them). Figures are those torchvision's weight enums, timm's pretrained cfgs and
results tables and the pretrainedmodels README publish for each file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch.hub

from .registry import IMAGENET_MEAN, IMAGENET_STD

INCEPTION_MEAN = (0.5, 0.5, 0.5)  # Google's TensorFlow releases take pixels scaled to [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what a timm Hub repository holds, preferred first


class WeightsNotFoundError(FileNotFoundError):
    """No copy of a weight file on this machine, and no way to download it; the message says where to put it."""


@dataclass(frozen=True)
class PretrainedCfg:
    """One released weight file and the evaluation published with it (timm's ``pretrained_cfg`` keys)."""

    architecture: str  # the cnnzoo model the file loads into
    tag: str  # the release, e.g. tv_in1k
    source: str  # library whose layout the file has: torchvision, timm, pretrainedmodels
    license: str
    url: str = ""  # direct download (torch.hub cache); its file name carries the hash prefix
    hf_hub_id: str = ""  # Hugging Face Hub repository
    input_size: tuple[int, int, int] = (3, 224, 224)  # evaluation crop, C x H x W
    crop_pct: float = 0.875  # crop side / resized shorter side
    crop_mode: str = "center"
    interpolation: str = "bilinear"  # of the resize
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    label_set: str = "imagenet-1k"  # class i is the i-th ImageNet-1k synset in sorted order
    top1: float | None = None  # published ImageNet-1k validation accuracy, %, single centre crop
    top5: float | None = None
    origin: str = ""  # who measured the accuracy, and anything particular about the file

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def file(self) -> str:
        """The file's name in the torch.hub checkpoints folder."""
        return self.url.rsplit("/", 1)[-1] if self.url else f"{self.name}.safetensors"

    def to_dict(self) -> dict:
        """timm's dict form (``model.pretrained_cfg``), with the file name."""
        return {**dataclasses.asdict(self), "file": self.file}


def _tv(model: str, file: str, top1: float, top5: float, tag: str = "tv_in1k", resize: int = 256,
        crop: int = 224, interpolation: str = "bilinear", **kw) -> PretrainedCfg:
    """A torchvision release: resize the shorter side to ``resize``, centre-crop ``crop``."""
    return PretrainedCfg(model, tag, "torchvision", "bsd-3-clause", url=f"https://download.pytorch.org/models/{file}",
                         input_size=(3, crop, crop), crop_pct=round(crop / resize, 4), interpolation=interpolation,
                         top1=top1, top5=top5, origin=kw.pop("origin", "torchvision's weight enum"), **kw)


def _timm(model: str, repo: str, top1: float, top5: float, size: int = 299, crop_pct: float = 0.875,
          **kw) -> PretrainedCfg:
    """A timm release on the Hugging Face Hub (timm's results-imagenet.csv accuracy at its own input size)."""
    return PretrainedCfg(model, repo.partition(".")[2], "timm", "apache-2.0", hf_hub_id=f"timm/{repo}",
                         input_size=(3, size, size), crop_pct=crop_pct, interpolation="bicubic",
                         mean=INCEPTION_MEAN, std=INCEPTION_STD, top1=top1, top5=top5,
                         origin=kw.pop("origin", "timm's results-imagenet.csv"), **kw)


# torchvision's GoogLeNet and Inception-v3 weights are Google's, trained on [-1, 1] pixels; torchvision
# rescales ImageNet-normalised input inside the model (transform_input=True). Normalising with mean = std = 0.5
# is the same computation (timm does the same for inception_v3.tv_in1k), so the cfg says that instead.
_INCEPTION_INPUT = dict(mean=INCEPTION_MEAN, std=INCEPTION_STD)

_TABLE: list[PretrainedCfg] = [
    _tv("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078),
    _tv("resnet34", "resnet34-b627a593.pth", 73.314, 91.42),
    _tv("resnet50", "resnet50-11ad3fa6.pth", 80.858, 95.434, tag="tv2_in1k", resize=232),
    _tv("resnet50", "resnet50-0676ba61.pth", 76.13, 92.862),
    _tv("resnet101", "resnet101-cd907fc2.pth", 81.886, 95.78, tag="tv2_in1k", resize=232),
    _tv("resnet101", "resnet101-63fe2227.pth", 77.374, 93.546),
    _tv("resnet152", "resnet152-f82ba261.pth", 82.284, 96.002, tag="tv2_in1k", resize=232),
    _tv("resnet152", "resnet152-394f9c45.pth", 78.312, 94.046),
    _tv("alexnet_tv", "alexnet-owt-7be5be79.pth", 56.522, 79.066),
    _tv("vgg11", "vgg11-8a719046.pth", 69.02, 88.628),
    _tv("vgg13", "vgg13-19584684.pth", 69.928, 89.246),
    _tv("vgg16", "vgg16-397923af.pth", 71.592, 90.382),
    _tv("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 90.876),
    _tv("vgg11_bn", "vgg11_bn-6002323d.pth", 70.37, 89.81),
    _tv("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 90.374),
    _tv("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.36, 91.516),
    _tv("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 91.842),
    _tv("googlenet_bn", "googlenet-1378be20.pth", 69.778, 89.53, **_INCEPTION_INPUT),
    _tv("densenet121", "densenet121-a639ec97.pth", 74.434, 91.972),
    _tv("densenet161", "densenet161-8d451a50.pth", 77.138, 93.56),
    _tv("densenet169", "densenet169-b2777c0a.pth", 75.6, 92.806),
    _tv("densenet201", "densenet201-c1103571.pth", 76.896, 93.37),
    _tv("inception_v3", "inception_v3_google-0cc3c7bd.pth", 77.294, 93.45, resize=342, crop=299, **_INCEPTION_INPUT),
    _tv("resnext50_32x4d", "resnext50_32x4d-1a0047aa.pth", 81.198, 95.34, tag="tv2_in1k", resize=232),
    _tv("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", 77.618, 93.698),
    _tv("resnext101_32x8d", "resnext101_32x8d-110c445d.pth", 82.834, 96.228, tag="tv2_in1k", resize=232),
    _tv("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth", 79.312, 94.526),
    _tv("squeezenet1_0", "squeezenet1_0-b66bff10.pth", 58.092, 80.42),
    _tv("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 58.178, 80.624),
    _tv("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", 77.692, 93.532, interpolation="bicubic"),
    # timm 1.0's legacy_xception cfg downloads this GitHub release file (so timm users have it in the torch.hub
    # cache); the same weights are on the Hub as timm/legacy_xception.tf_in1k.
    dataclasses.replace(
        _timm("xception", "legacy_xception.tf_in1k", 79.058, 94.396, crop_pct=0.8975),
        url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/xception-43020ad28.pth"),
    _timm("inception_resnet_v2", "inception_resnet_v2.tf_in1k", 80.434, 95.312, crop_pct=0.8975),
    _timm("inception_v4", "inception_v4.tf_in1k", 80.144, 94.982),
    _timm("mobilenet_v1_100_relu6", "mobilenetv1_100.ra4_e3600_r224_in1k", 75.388, 92.31, size=224,
          origin="timm's results-imagenet.csv at 224 (76.088 / 93.006 at its test size 256, crop 0.95)"),
    PretrainedCfg("polynet", "caffe_in1k", "pretrainedmodels", "bsd-3-clause",
                  url="http://data.lip6.fr/cadene/pretrainedmodels/polynet-f71d82a5.pth", input_size=(3, 331, 331),
                  top1=81.002, top5=95.624,
                  origin="CUHK-MMLAB's Caffe release ported by pretrainedmodels (its README; the Caffe original:"
                         " 81.29 / 95.75)"),
]

_WEIGHTS: dict[str, list[PretrainedCfg]] = {}
for _cfg in _TABLE:
    _WEIGHTS.setdefault(_cfg.architecture, []).append(_cfg)


def pretrained_tags(name: str) -> list[str]:
    """The tags of ``name``'s released weights, the default first (empty if it has none)."""
    return [cfg.tag for cfg in _WEIGHTS.get(name, [])]


def list_pretrained(pattern: str = "*") -> list[str]:
    """``NAME.TAG`` of every released file whose name matches the fnmatch ``pattern``, in table order."""
    return [cfg.name for cfg in _TABLE if fnmatch.fnmatch(cfg.name, pattern)
            or fnmatch.fnmatch(cfg.architecture, pattern)]


def get_pretrained_cfg(name: str, tag: str | None = None) -> PretrainedCfg:
    """The entry for ``name`` (or ``NAME.TAG``) and ``tag``; the model's first tag when neither names one."""
    name, _, named_tag = name.partition(".")
    tag = tag or named_tag or None
    cfgs = _WEIGHTS.get(name)
    if not cfgs:
        with_weights = ", ".join(sorted(_WEIGHTS))
        raise ValueError(f"{name} has no published weights; models with weights: {with_weights}")
    for cfg in cfgs:
        if tag in (None, cfg.tag):
            return cfg
    raise ValueError(f"{name} has no weights tagged {tag!r}; its tags: {', '.join(c.tag for c in cfgs)}")


def checkpoints_dir() -> Path:
    """torch.hub's folder for downloaded weights: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("CNNZOO_OFFLINE", "HF_HUB_OFFLINE"))


def _hub_cached(repo: str) -> Path | None:
    """The file of Hub repository ``repo`` already in the Hugging Face cache, if huggingface_hub is installed."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _download(cfg: PretrainedCfg, local: Path) -> Path:
    """Fetch ``cfg``'s file into its cache: the Hub's with huggingface_hub, else torch.hub's from the URL."""
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            if not cfg.url:
                raise WeightsNotFoundError(f"{cfg.name} is on the Hugging Face Hub ({cfg.hf_hub_id}): "
                                           "pip install 'cnnzoo[hub]' (huggingface_hub) to download it") from None
        else:
            return Path(hf_hub_download(cfg.hf_hub_id, HUB_FILES[0]))
    local.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(local.name)
    torch.hub.download_url_to_file(cfg.url, str(local), match.group(1) if match else None, progress=True)
    return local


def _missing(cfg: PretrainedCfg, local: Path, why: str) -> WeightsNotFoundError:
    where = cfg.url or f"https://huggingface.co/{cfg.hf_hub_id} ({HUB_FILES[0]})"
    return WeightsNotFoundError(f"{cfg.name}: {why}; put {local.name} from {where} into {local.parent}/")


def weight_file(cfg: PretrainedCfg) -> Path:
    """A local copy of ``cfg``'s file: from torch.hub's or the Hub's cache, else downloaded there.

    Offline (CNNZOO_OFFLINE=1 or HF_HUB_OFFLINE=1, or no network) with no copy, raises
    ``WeightsNotFoundError`` naming the file and the folder to put it in.
    """
    local = checkpoints_dir() / cfg.file
    if local.is_file():
        return local
    if cfg.hf_hub_id and (cached := _hub_cached(cfg.hf_hub_id)) is not None:
        return cached
    if _offline():
        raise _missing(cfg, local, "offline and not in the torch.hub or Hugging Face cache")
    try:
        return _download(cfg, local)
    except (OSError, RuntimeError) as e:  # URLError and the Hub's connection errors are OSErrors
        if isinstance(e, WeightsNotFoundError):
            raise
        reason = re.sub(r"\s+", " ", str(e)).strip()[:200]
        raise _missing(cfg, local, f"download failed ({type(e).__name__}: {reason})") from None
