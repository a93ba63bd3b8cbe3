import subprocess
import sys

import pytest

from cnnzoo.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True)


def main_status(args, capsys) -> tuple[int, str]:
    """``cnnzoo ARGS`` in this process: its exit status (returned, or argparse's SystemExit) and its stderr."""
    try:
        status = main(args)
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


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
def test_bad_input_is_one_line_and_status_2(args, message, capsys):
    status, err = main_status(args, capsys)
    assert status == 2
    assert err.count("\n") == 1 and message in err


def test_bad_input_from_a_real_process_is_one_line_and_status_2():
    """What the shell sees (the in-process checks above cover every kind of bad input)."""
    result = run_cli("info", "resnt50")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("cnnzoo: error: unknown model 'resnt50'; closest: resnet50")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_version_is_the_package_version():
    import cnnzoo

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"cnnzoo {cnnzoo.__version__}\n"


def test_a_closed_pipe_ends_quietly():
    """`cnnzoo list | head -1`: the reader leaves after one line; cnnzoo stops without a word on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnzoo", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read()
    assert proc.wait() == 0 and first.startswith(b"model") and err == b""


@pytest.mark.parametrize("args", [
    ["eval", "--checkpoint", "/nonexistent/run"],
    ["export", "resnet18", "--checkpoint", "/nonexistent/weights.safetensors"],
])
def test_missing_checkpoint_is_status_2(args, capsys):
    status, err = main_status(args, capsys)
    assert status == 2 and err.count("\n") == 1
    assert "'/nonexistent/" in err and "does not exist" in err


def test_every_subcommand_is_listed_in_help():
    from cnnzoo.cli import SUBCOMMANDS, build_parser

    help_text = build_parser().format_help()
    for add in SUBCOMMANDS:
        assert add.__name__.removeprefix("add_").replace("_", "-") in help_text
