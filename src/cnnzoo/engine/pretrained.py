"""Top-1 / top-5 of published weights on a validation folder, with the weights' own preprocessing."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from ..data.preprocess import ValidationFolder, create_transform, data_config
from ..registry import create_model
from .trainer import evaluate, resolve_device


class _OnDevice:
    """A DataLoader seen as ``evaluate``'s loader: ``epoch(n)`` yields its batches on ``device``."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def epoch(self, _: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def evaluate_pretrained(name: str, data_dir: str, tag: str | None = None, batch_size: int = 64,
                        device: str = "auto", workers: int = 0) -> dict:
    """Load ``name``'s published weights (``tag``, default its first) and score them on ``data_dir``.

    ``data_dir`` holds class folders (or ``val/`` with them); no training split is needed. Returns
    ``loss, top1, top5`` (%), the number of ``images``, and the weights' entry as ``weights``
    (``pretrained_cfg``: published ``top1`` / ``top5``, preprocessing).
    """
    model = create_model(name, pretrained=tag or True)
    config = data_config(model)
    data_dir = data_dir.removeprefix("folder:")  # the data spec of `cnnzoo train` names folders so too
    data = ValidationFolder(data_dir, create_transform(config), model.pretrained_cfg["num_classes"])
    dev = resolve_device(device)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, pin_memory=dev.type == "cuda")
    with torch.inference_mode():
        scores = evaluate(model.to(dev), _OnDevice(loader, dev))
    return {**scores, "images": len(data), "weights": model.pretrained_cfg}
