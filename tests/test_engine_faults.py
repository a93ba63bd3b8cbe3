"""Interrupted training, atomic checkpoints, unsafe and mismatched weight files (issue 8)."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from standin_data import one_thread, synthetic  # noqa: F401  (fixtures)

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.engine import CheckpointError, WriteError, load_checkpoint, load_config, save_weights, train
from cnnzoo.files import load_file
from cnnzoo.engine.checkpoint import save_checkpoint
from cnnzoo.engine.metrics import TIMING_COLUMNS, read_metrics
from cnnzoo.engine.trainer import load_trained

RUNNER = Path(__file__).with_name("standin_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
ARGS = ["--epochs", "6", "--batch-size", "16", "--lr", "0.05", "tensorboard=false", "checkpoint_every=1"]


def start(out, *extra, env=ENV):
    return subprocess.Popen([sys.executable, str(RUNNER), "train", "--out", str(out), "name=run", *ARGS, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(ckpt: Path, step: int, proc, timeout=120):
    """Poll the (atomically replaced) checkpoint until it records ``step`` steps."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ckpt.exists() and load_checkpoint(ckpt)["step"] >= step:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError(f"{ckpt} never reached step {step}")


def reference(tmp_path):
    """The same run, uninterrupted, in this process (one thread, like the subprocesses)."""
    cfg = load_config(None, {"out": str(tmp_path), "name": "reference", "epochs": 6, "batch_size": 16, "lr": 0.05,
                             "tensorboard": False})
    train(cfg, data=synthetic())
    return tmp_path / "reference"


def assert_same_run(a: Path, b: Path):
    wa, wb = load_checkpoint(a / "last.ckpt")["model"], load_checkpoint(b / "last.ckpt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [[{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_metrics(p / "metrics.csv")]
            for p in (a, b)]
    assert rows[0] == rows[1]


@pytest.mark.heavy
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, one_thread):
    proc = start(tmp_path)
    wait_for_step(tmp_path / "run" / "last.ckpt", 7, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(tmp_path / "run" / "last.ckpt")["step"]
    assert 7 <= killed_at < 18  # really mid-run: 6 epochs x 3 steps
    done = subprocess.run([sys.executable, str(RUNNER), "train", "--resume", str(tmp_path / "run")], env=ENV,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("top1=")
    assert_same_run(reference(tmp_path), tmp_path / "run")


@pytest.mark.heavy
def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path):
    proc = start(tmp_path)
    wait_for_step(tmp_path / "run" / "last.ckpt", 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.count("\n") == 1 and "SIGTERM at step" in err and f"--resume {tmp_path / 'run'}" in err
    stopped_at = int(err.split("SIGTERM at step ")[1].split()[0])
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["step"] == stopped_at  # saved at the signal, not before


@pytest.mark.heavy
def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path, one_thread):
    proc = start(tmp_path, env={**ENV, "STANDIN_DIE_IN_SAVE": "8"})  # dies halfway through writing checkpoint 8
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    assert list(run.glob(".last.ckpt.*.tmp"))  # the half-written file never replaced the good one
    assert load_checkpoint(run / "last.ckpt")["step"] == 7
    done = subprocess.run([sys.executable, str(RUNNER), "train", "--resume", str(run)], env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert not list(run.glob(".last.ckpt.*.tmp"))  # the dead writer's temporary file is cleaned up
    assert_same_run(reference(tmp_path), run)


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, one_thread):
    cfg = load_config(None, {"out": str(tmp_path), "name": "run", "epochs": 3, "batch_size": 16, "tensorboard": False})
    real_save, calls = torch.save, []

    def full_disk(obj, f):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f)
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError) as e:
        train(cfg, data=synthetic())
    last = tmp_path / "run" / "last.ckpt"
    assert str(e.value).startswith(f"could not write {last}: the disk is full (")
    assert str(e.value).endswith(f"the previous last.ckpt is kept; after freeing space, continue with"
                                 f" `cnnzoo train --resume {tmp_path / 'run'}`")
    monkeypatch.undo()
    assert load_checkpoint(last)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []  # no temp file left


class Payload:
    """Unpickling this runs `touch MARKER`: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_is_refused_and_its_payload_never_runs(tmp_path, capsys, one_thread):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"model": {"fc.weight": torch.zeros(1)}, "x": Payload(marker)}, evil)
    torch.load(evil, weights_only=False)  # the control: a plain unpickle does run it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match="refusing to load .*evil.ckpt.*could run code"):
        load_checkpoint(evil)
    assert main(["eval", "--checkpoint", str(evil), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to load" in err
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_file(disguised)
    # a run folder whose last.ckpt was replaced: resume refuses too
    cfg = load_config(None, {"out": str(tmp_path), "name": "run", "epochs": 2, "batch_size": 16, "tensorboard": False,
                             "stop_after": 1})
    train(cfg, data=synthetic())
    (tmp_path / "run" / "last.ckpt").write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="refusing to load"):
        train(cfg, data=synthetic(), resume=tmp_path / "run")
    assert not marker.exists()


def test_weights_of_another_architecture_list_keys_and_shapes(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    save_weights(path, create_model("resnet20", num_classes=4, in_chans=1),
                 {"model": "resnet20", "num_classes": 4, "in_chans": 1})
    net, meta = load_trained(path)
    assert meta["model"] == "resnet20" and net.fc.out_features == 4
    with pytest.raises(CheckpointError) as e:
        load_trained(path, model="resnet32")
    assert "missing keys (72): layer1.3.bn1.bias" in str(e.value)
    assert main(["eval", "--checkpoint", str(path), "--model", "resnet32"]) == 2
    assert "missing keys" in capsys.readouterr().err

    wrong = tmp_path / "wrong.safetensors"
    save_weights(wrong, create_model("resnet20", num_classes=5, in_chans=1), {"model": "resnet20", "num_classes": 4,
                                                                              "in_chans": 1})
    with pytest.raises(CheckpointError, match=r"shape mismatches \(2\): fc.bias: file \(5,\) vs model \(4,\)"):
        load_trained(wrong)


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "history": [{"top1": 1.5}], "rng": (3, (1, 2), None)}
    save_checkpoint(tmp_path / "c.ckpt", state)
    back = load_checkpoint(tmp_path / "c.ckpt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["history"] == state["history"]
