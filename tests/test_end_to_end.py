"""The whole stack with real data and no stand-ins: `cnnzoo train` then `cnnzoo eval`, in real processes."""

import re
import subprocess
import sys

import pytest

SUMMARY = re.compile(r"top1=(\d+\.\d\d) top5=(\d+\.\d\d)")


def cnnzoo(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.heavy
def test_train_on_cifar10_jpeg_folders_then_eval_reproduces_the_summary(cifar10_jpeg, tmp_path):
    last = cnnzoo("train", "--model", "resnet20", "--data", f"folder:{cifar10_jpeg}", "--epochs", "2",
                  "--batch-size", "32", "--out", str(tmp_path), "name=run", cwd=tmp_path)
    match = re.fullmatch(SUMMARY.pattern + rf" run={re.escape(str(tmp_path / 'run'))}", last)
    assert match, last
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "curves.png", "last.ckpt", "best.safetensors"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    evaluated = cnnzoo("eval", "--checkpoint", str(run), "--data", f"folder:{cifar10_jpeg}", cwd=tmp_path)
    assert evaluated == last.rsplit(" run=", 1)[0]


def test_strict_data_refuses_to_start_and_lists_the_bad_files(tmp_path):
    from conftest import make_folder

    root = make_folder(tmp_path / "data")
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "val" / "dog" / "notes.jpg").write_text("not an image")
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "train", "--model", "resnet20", "--data", str(root),
                             "--epochs", "1", "--out", str(tmp_path / "runs"), "--strict-data"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "empty.jpg" in result.stderr and "notes.jpg" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
