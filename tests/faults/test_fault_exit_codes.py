"""Category 8: one exit-status mapping for every subcommand (cnnzoo.cli.exit_status): 0 success, 2 anything the
user gave wrong (missing file, bad value, bad data, a full disk), 1 only for an internal error; always one line."""

import pytest
from fault_helpers import one_line, tree

from cnnzoo import cli, registry

USER_ERRORS = {
    "list: no model matches": ["list", "nomodel*"],
    "info: unknown model": ["info", "resnet21"],
    "info: --format without --layers": ["info", "resnet20", "--format", "csv"],
    "bench: unknown model": ["bench", "nomodel"],
    "compare: unknown model": ["compare", "resnet20", "nomodel", "--no-speed"],
    "explain: unknown topic": ["explain", "nothing"],
    "export: missing checkpoint": ["export", "resnet20", "--checkpoint", "missing.pt"],
    "table: missing README": ["table", "--write", "missing/README.md"],
    "check-data: missing folder": ["check-data", "missing-folder"],
    "train: missing recipe": ["train", "--config", "missing.yaml"],
    "train: missing data folder": ["train", "--data", "folder:missing-folder"],
    "train: bad value": ["train", "epochs=-1"],
    "train: unknown key": ["train", "epochz=3"],
    "eval: missing checkpoint": ["eval", "--checkpoint", "missing.ckpt"],
    "unknown subcommand": ["frobnicate"],
    "unknown option": ["list", "--frob"],
}


@pytest.mark.parametrize("argv", USER_ERRORS.values(), ids=USER_ERRORS)
def test_user_errors_exit_2_with_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert one_line(capsys.readouterr().err).startswith("cnnzoo: ")


def test_bad_data_exits_2(tmp_path, capsys):
    root = tree(tmp_path / "data")
    (root / "train" / "a" / "0.jpg").write_bytes(b"")
    assert cli.main(["check-data", str(root), "--workers", "0"]) == 2
    assert "1 problem(s) found" in capsys.readouterr().out


def test_success_exits_0(capsys):
    assert cli.main(["list", "resnet20"]) == 0
    assert cli.main(["info", "resnet20"]) == 0
    assert "resnet20" in capsys.readouterr().out


def test_an_internal_error_exits_1_with_one_line(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(registry, "list_models", broken)
    assert cli.main(["list"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("cnnzoo: internal error: KeyError: 'a bug'") and "CNNZOO_DEBUG=1" in line
    monkeypatch.setenv("CNNZOO_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["list"])


def test_the_mapping_itself():
    from cnnzoo.engine import ConfigError, Interrupted, NumericalError
    from cnnzoo.files import CheckpointError, WriteError

    cases = {ConfigError("x"): 2, CheckpointError("x"): 2, WriteError("x"): 2, NumericalError("x"): 2,
             FileNotFoundError(2, "No such file or directory", "f"): 2, PermissionError(13, "denied", "f"): 2,
             Interrupted("x", 15): 143, KeyboardInterrupt(): 130, BrokenPipeError(): 0, RuntimeError("x"): 1,
             TypeError("x"): 1}
    assert {type(e).__name__: cli.exit_status(e)[0] for e in cases} == {type(e).__name__: s for e, s in cases.items()}
