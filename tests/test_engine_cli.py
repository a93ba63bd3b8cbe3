"""`cnnzoo train` / `cnnzoo eval` from the command line: the summary line and one-line argument errors."""

import re
import subprocess
import sys

import pytest
import torch
from standin_data import TinyNet, one_thread, registered, standin_cli  # noqa: F401  (fixtures)

from cnnzoo.cli import main
from cnnzoo.engine import load_config

SUMMARY = re.compile(r"top1=\d+\.\d\d top5=\d+\.\d\d")


def test_train_then_eval_print_the_same_summary(tmp_path, capsys, standin_cli, one_thread):
    assert main(["train", "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path), "tensorboard=false",
                 "--lr", "0.05", "name=run"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(SUMMARY.pattern + rf" run={re.escape(str(tmp_path / 'run'))}", last)
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == last.rsplit(" run=", 1)[0]


def test_resume_flags_override_the_saved_config(tmp_path, capsys, standin_cli, one_thread):
    args = ["train", "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path), "name=run", "tensorboard=false"]
    assert main([*args, "stop_after=1"]) == 0
    assert "stopped after epoch 1 of 2: continue with `cnnzoo train --resume" in capsys.readouterr().out
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "3", "stop_after=0"]) == 0
    assert SUMMARY.match(capsys.readouterr().out.splitlines()[-1])
    assert load_config(tmp_path / "run" / "config.yaml").epochs == 3
    assert [line.split(",")[0] for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]] == \
        ["1", "2", "3"]


def needs_sixteen(**kwargs):
    return TinyNet(kernel=8, padding=0, layers=2, **kwargs)  # two unpadded 8x8 convolutions: at least 15x15


@pytest.mark.parametrize("args, message", [
    (["--model", "resnt20"], "unknown model 'resnt20'; closest: resnet20"),
    (["epoch=3"], "unknown config key 'epoch' in overrides (did you mean 'epochs'?); valid keys: model, model_kwargs,"),
    (["epochs=ten"], "config key 'epochs' expects int, got 'ten'"),
    (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    (["num_classes=10"], "num_classes 10 disagrees with data 'digits', which has 4 classes"),
    (["--model", "needs_sixteen"], "input size 8 is too small for needs_sixteen: it needs at least 15x15"),
    (["img_size=0"], "config key 'img_size' is out of range: got 0, valid >= 1"),
    (["--resume", "/nonexistent/run"], "cannot resume /nonexistent/run: no config.yaml there"),
    (["log_every=0"], "config key 'log_every' is out of range: got 0, valid >= 1"),
])
def test_argument_errors_are_one_line_and_status_2(args, message, tmp_path, capsys, standin_cli):
    with registered(needs_sixteen, input_size=(1, 16, 16), num_classes=4):
        assert main(["train", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so --device cuda is valid")
def test_cuda_requested_without_one_is_an_argument_error(capsys):
    assert main(["train", "--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("cnnzoo: error: device 'cuda' was requested but torch sees no CUDA GPU;"
                                       " use --device cpu (or auto)\n")


def test_missing_data_path_is_an_argument_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "train", "--data", str(tmp_path / "nowhere"),
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere" in result.stderr


def test_real_process_exit_status_for_a_bad_key():
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "train", "momentum=fast"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "cnnzoo: error: config key 'momentum' expects float, got 'fast'\n"
