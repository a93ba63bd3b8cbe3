"""A 2-process gloo DDP run through torchrun on CPU equals one process with the same total batch, with and
without stochastic depth."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnzoo.engine import load_checkpoint
from cnnzoo.engine.metrics import read_metrics
from cnnzoo.engine.trainer import step_seed

RUNNER = Path(__file__).with_name("standin_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
# tiny_cnn has no BatchNorm: per-rank batch statistics would differ from the full batch's (use sync_bn on GPUs)
ARGS = ["train", "--model", "tiny_cnn", "--epochs", "3", "--batch-size", "16", "--lr", "0.1", "--device", "cpu",
        "tensorboard=false", "name=run"]


@pytest.mark.heavy
def test_two_process_gloo_run_equals_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run([*torchrun, str(RUNNER), *ARGS, "--out", str(tmp_path / "two")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(RUNNER), *ARGS, "--out", str(tmp_path / "one")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    # only rank 0 prints the summary and writes the run folder
    assert [line for line in two.stdout.splitlines() if line.startswith("top1=")] == \
        [f"top1={one.stdout.split('top1=')[1].split(' run=')[0]} run={tmp_path / 'two' / 'run'}"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["run"]

    a, b = (load_checkpoint(tmp_path / d / "run" / "last.ckpt") for d in ("one", "two"))
    assert b["world_size"] == 2 and len(b["rng"]) == 2  # every rank's RNG state is kept
    for k in a["model"]:  # averaged half-batch gradients = the full batch's, up to float rounding
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k
    rows = [read_metrics(tmp_path / d / "run" / "metrics.csv") for d in ("one", "two")]
    for r1, r2 in zip(*rows):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)
        for key in ("train_top1", "test_top1", "test_top5"):
            assert r1[key] == r2[key]


@pytest.mark.heavy
def test_stochastic_depth_under_two_process_gloo_equals_one_process(tmp_path):
    """Batch-mode stochastic depth under DDP: both ranks drop the same blocks (and the same as one process
    does), a dropped block's parameters go unused without a DDP error, and the weights after 6 steps equal
    those of one process on the same total batch."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = ["train", "--model", "resnet20_no_bn", "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
            "--device", "cpu", "drop_path_rate=0.5", "tensorboard=false", "name=run"]
    runs = {}
    for d, launch in (("two", torchrun), ("one", [sys.executable])):
        (tmp_path / d).mkdir()
        runs[d] = subprocess.run([*launch, str(RUNNER), *args, "--out", str(tmp_path / d)],
                                 env={**ENV, "STANDIN_GATE_LOG": str(tmp_path / d)}, capture_output=True, text=True,
                                 timeout=300)
        assert runs[d].returncode == 0, runs[d].stderr[-3000:]

    logs = {name: json.loads((tmp_path / d / f"gates-rank{r}.json").read_text())
            for name, d, r in (("rank0", "two", 0), ("rank1", "two", 1), ("one", "one", 0))}
    passes = logs["rank0"]["passes"]
    assert len(passes) == 6 and logs["rank0"]["blocks"] == 9  # 2 epochs x 48 / 16 steps; ResNet-20's 9 blocks
    assert logs["rank1"]["passes"] == passes and logs["one"]["passes"] == passes
    assert any(len(ran) < 9 for ran in passes)  # some step skipped some blocks: their parameters went unused
    assert len({tuple(ran) for ran in passes}) > 1  # and the gates changed from step to step

    a, b = (load_checkpoint(tmp_path / d / "run" / "last.ckpt") for d in ("one", "two"))
    assert b["world_size"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k


def test_gate_seeds_differ_between_runs_and_between_steps():
    """Every rank seeds its gates with step_seed(run seed, step); a CPU generator reads only the seed's low 32 bits."""
    def gates(seed, step):
        return torch.rand(16, generator=torch.Generator().manual_seed(step_seed(seed, step))) < 0.5

    assert torch.equal(gates(3, 5), gates(3, 5))  # the same on every rank, and after a resume
    assert not torch.equal(gates(0, 5), gates(1, 5))  # another run seed, other gates
    assert not torch.equal(gates(0, 5), gates(0, 6))
