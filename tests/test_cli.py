import subprocess
import sys

import pytest

from cnnzoo.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True)


def test_info_resnet50_matches_reference(capsys):
    assert main(["info", "resnet50"]) == 0
    out = capsys.readouterr().out
    params = next(line for line in out.splitlines() if "params" in line)
    macs = next(line for line in out.splitlines() if "MACs" in line)
    assert "25,557,032" in params and "✓ match" in params
    assert "4.089 G" in macs and "✓ match" in macs


def test_info_resnet110_params_and_expected_depth(capsys):
    assert main(["info", "resnet110", "--drop-path-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "1,727,962" in out and "✓ match" in out
    assert "54 blocks, expected active E[L~] = 40.25" in out


def test_list_prints_one_model_a_line(capsys):
    assert main(["list", "resnet5*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["resnet50", "resnet50_paper", "resnet56"]
    assert "25,557,032" in lines[1] and "4.089" in lines[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "resnt50"], "unknown model 'resnt50'; closest: resnet50"),
        (["info", "resnet50", "--input-size", "0"], "input size must be a positive"),
        (["info", "resnet50", "--input-size", "x"], "invalid int value"),
        (["list", "nothing*"], "no model matches"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
