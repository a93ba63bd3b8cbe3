"""Every ```python block of the README runs, in order, in one namespace (as a reader pastes them)."""

import re
from pathlib import Path

import pytest
import torch

from cnnzoo import hub
from conftest import require_peer

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture
def readme_weights(tmp_path, monkeypatch):
    """The published files the README loads, as random torchvision weights in a temporary torch.hub cache."""
    torchvision = require_peer("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub.checkpoints_dir().mkdir(parents=True)
    for name, builder in (("resnet18", torchvision.models.resnet18), ("resnet50.tv_in1k", torchvision.models.resnet50)):
        torch.save(builder().state_dict(), hub.checkpoints_dir() / hub.get_pretrained_cfg(name).file)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3 and any("cnnzoo.deploy(model)" in block for block in BLOCKS)


def test_every_python_block_runs(readme_weights):
    namespace: dict = {}
    for number, block in enumerate(BLOCKS, 1):
        exec(compile(block, f"README.md, python block {number}", "exec"), namespace)
    assert isinstance(namespace["fast"], torch.nn.Module)  # the last block's result: deploy returned a model
