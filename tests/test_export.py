"""`cnnzoo export`: the ONNX file runs in onnxruntime, and both formats give the model's logits."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnzoo
from cnnzoo.cli import main
from conftest import require_peer

SRC_ON_PATH = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A resnet20 with non-trivial BN statistics, saved the way a training run would save it."""
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20").train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    path = tmp_path_factory.mktemp("ckpt") / "resnet20.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    return path, model.eval()


@pytest.mark.heavy  # the ONNX exporter: the slowest single test outside training runs
def test_onnx_runs_in_onnxruntime_with_the_same_logits(checkpoint, tmp_path):
    ort = require_peer("onnxruntime")
    path, model = checkpoint
    out = tmp_path / "r20.onnx"
    assert main(["export", "resnet20", "--checkpoint", str(path), "--output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)  # another batch size than the export's: the batch dimension is dynamic
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(logits - expected).max() <= 1e-4


def test_torchscript_with_the_same_logits(checkpoint, tmp_path):
    path, model = checkpoint
    out = tmp_path / "r20.pt"
    assert main(["export", "resnet20", "--checkpoint", str(path), "--format", "torchscript",
                 "--output", str(out)]) == 0
    loaded = torch.jit.load(str(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max().item() <= 1e-4


def test_safetensors_checkpoint_loads(checkpoint, tmp_path):
    from safetensors.torch import save_file

    from cnnzoo.files import load_file
    from cnnzoo.weights import import_weights

    _, model = checkpoint
    path = tmp_path / "r20.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))  # another tool's file
    fresh = import_weights(cnnzoo.create_model("resnet20"), load_file(path)[0])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("args, message", [
    (["export", "resnet20", "--checkpoint", "missing.pt"], "argument --checkpoint: 'missing.pt' does not exist"),
    (["export", "resnet20", "--format", "tflite"], "invalid choice: 'tflite'"),
])
def test_bad_export_is_one_line_and_status_2(args, message):
    result = subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_exports_a_training_runs_weights_with_their_channels_and_classes(tmp_path):
    """best.safetensors of a run on 1-channel, 10-class digits: export rebuilds that model, not the default."""
    ort = require_peer("onnxruntime")
    from cnnzoo.engine.checkpoint import save_weights

    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", in_chans=1, num_classes=10).eval()
    save_weights(tmp_path / "best.safetensors", model, {"model": "resnet20", "in_chans": 1, "num_classes": 10})
    out = tmp_path / "digits.onnx"
    assert main(["export", "resnet20", "--checkpoint", str(tmp_path / "best.safetensors"), "--output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 1, 32, 32)
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() <= 1e-4


def test_onnx_export_without_the_onnx_extra_is_one_line_and_status_2(tmp_path):
    """As on an install without `cnnzoo[onnx]`: importing onnx and onnxscript fails."""
    hide = "import sys; sys.modules['onnx'] = sys.modules['onnxscript'] = None; from cnnzoo.cli import main; "
    result = subprocess.run([sys.executable, "-c", hide + "sys.exit(main(['export', 'resnet18']))"],
                            capture_output=True, text=True, cwd=tmp_path, env=SRC_ON_PATH)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "pip install 'cnnzoo[onnx]'" in result.stderr and not list(tmp_path.iterdir())
