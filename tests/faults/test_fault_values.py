"""Categories 6 and 7: values out of range are one line naming key, value and range (exit 2), checked when
the config is read; a run killed before its first checkpoint starts over in its folder on --resume."""

import dataclasses
import os
import signal
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from fault_helpers import one_line
from standin_data import build_standin

from cnnzoo import cli
from cnnzoo.engine import ConfigError, load_checkpoint, load_config, trainer
from cnnzoo.engine.config import RANGES, TrainConfig

BAD = [
    ("epochs=0", "config key 'epochs' is out of range: got 0, valid >= 1"),
    ("eval_every=0", "config key 'eval_every' is out of range: got 0, valid >= 1"),
    ("label_smoothing=1.0", "config key 'label_smoothing' is out of range: got 1.0, valid [0, 1)"),
    ("lr=0", "config key 'lr' is out of range: got 0.0, valid > 0"),
    ("lr=.nan", "config key 'lr' must be a finite number, got nan"),
    ("lr=-1e-3", "config key 'lr' is out of range: got -0.001, valid > 0"),
    ("batch_size=0", "config key 'batch_size' is out of range: got 0, valid >= 1"),
    ("momentum=1.5", "config key 'momentum' is out of range: got 1.5, valid [0, 1)"),
    ("drop_path_rate=1", "config key 'drop_path_rate' is out of range: got 1.0, valid [0, 1)"),
    ("milestones=[30,-5]", "config key 'milestones' is out of range: got -5.0, valid >= 0"),
    ("workers=-1", "config key 'workers' is out of range: got -1, valid >= 0"),
    ("gamma=0", "config key 'gamma' is out of range: got 0.0, valid > 0"),
    ("weight_decay=.inf", "config key 'weight_decay' must be a finite number, got inf"),
]


@pytest.mark.parametrize("pair, message", BAD, ids=[b[0] for b in BAD])
def test_value_out_of_range_is_one_line_exit_2(pair, message, capsys):
    assert cli.main(["train", pair]) == 2
    assert one_line(capsys.readouterr().err) == f"cnnzoo: error: {message}"


def test_flags_and_recipes_are_checked_too(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "0"]) == 2
    assert "'epochs' is out of range" in one_line(capsys.readouterr().err)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("label_smoothing: 1.5\n")
    with pytest.raises(ConfigError, match="'label_smoothing' is out of range: got 1.5"):
        load_config(recipe)


def test_every_numeric_key_has_a_range():
    hints = typing.get_type_hints(TrainConfig)
    numeric = {f.name for f in dataclasses.fields(TrainConfig)
               if {int, float} & {hints[f.name], *typing.get_args(hints[f.name]),
                                  *(a for t in typing.get_args(hints[f.name]) for a in typing.get_args(t))}}
    assert numeric == set(RANGES)
    defaults = TrainConfig()
    for key, valid in RANGES.items():  # the defaults are valid, and so every packaged recipe
        value = getattr(defaults, key)
        assert value is None or all(v in valid for v in (value if isinstance(value, list) else [value])), key
    recipes = sorted((Path(__file__).parents[2] / "src" / "cnnzoo" / "configs").glob("*.yaml"))  # packaged
    assert len(recipes) >= 9
    for recipe in recipes:
        load_config(recipe)


RUNNER = Path(__file__).parents[1] / "standin_train.py"


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, monkeypatch, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
           "STANDIN_DIE_IN_SAVE": "1"}  # SIGKILL halfway through writing the first checkpoint
    killed = subprocess.run([sys.executable, str(RUNNER), "train", "--out", str(tmp_path), "name=run",
                             "--epochs", "2", "--batch-size", "16", "tensorboard=false"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and not (run / "last.ckpt").exists()

    monkeypatch.setattr(trainer, "build_data", build_standin)
    assert cli.main(["train", "--resume", str(run)]) == 0
    captured = capsys.readouterr()
    assert f"{run} has no checkpoint yet (the run stopped before writing one): starting it over in that folder" \
        in captured.err
    assert captured.out.splitlines()[-1].startswith("top1=") and f"run={run}" in captured.out
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 2
    assert not list(run.glob(".*.tmp"))  # the killed writer's half file is gone


def test_resume_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml there" in one_line(capsys.readouterr().err)
