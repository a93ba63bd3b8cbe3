"""The suite checks what it claims: peer-dependent tests skip one by one (never a whole file), and under CI=true
a missing peer library or missing development data fails instead of skipping."""

import ast
import functools
from pathlib import Path

import pytest
import torch

import conftest


@functools.cache
def suite_files() -> tuple[tuple[str, ast.Module], ...]:
    """Each file of tests/ by name, parsed."""
    return tuple((path.name, ast.parse(path.read_text())) for path in sorted(Path(__file__).parent.glob("*.py")))


def test_missing_peer_or_data_skips_locally_and_fails_under_ci(monkeypatch, tmp_path):
    assert conftest.require_peer("torch") is torch
    absent = tmp_path / "absent.tar.gz"
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="peer library no_such_peer_lib is not installed"):
        conftest.require_peer("no_such_peer_lib")
    with pytest.raises(pytest.skip.Exception, match="development data not found"):
        conftest.require_shared_data(absent)
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="no_such_peer_lib .*CI=true"):
        conftest.require_peer("no_such_peer_lib")
    with pytest.raises(pytest.fail.Exception, match="absent.tar.gz.*CI=true"):
        conftest.require_shared_data(absent)
    absent.write_bytes(b"")
    assert conftest.require_shared_data(absent) == absent


def test_ci_is_read_from_the_environment(monkeypatch):
    for value, expected in (("true", True), ("1", True), ("false", False), ("", False)):
        monkeypatch.setenv("CI", value)
        assert conftest.ci() is expected


def test_peers_are_required_through_require_peer():
    """pytest.importorskip skips even under CI=true: peers go through conftest.require_peer."""
    offenders = [f"{name}:{node.lineno}" for name, tree in suite_files() for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr == "importorskip"]
    assert not offenders, f"use require_peer instead of pytest.importorskip: {offenders}"


def test_no_test_file_skips_as_a_whole():
    """pytest.importorskip / pytest.skip at module level would hide every test of a file, also those that do
    not need the peer: use require_peer inside the test."""
    offenders = []
    for name, tree in suite_files():
        for node in tree.body:
            calls = [c for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                     and c.func.attr in ("importorskip", "skip")] if not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
            offenders += [f"{name}:{c.lineno}" for c in calls]
    assert not offenders, f"module-level skips: {offenders}"


def test_tests_skip_only_for_a_missing_peer_data_set_or_gpu():
    """A skip outside conftest's ``_missing`` must depend on the hardware (CUDA); anything else (a model not
    registered, a results file absent) is a failure: a skip there would hide a broken tree."""
    offenders = []
    for name, tree in suite_files():
        if name == "conftest.py":
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr in ("skip", "xfail") and isinstance(node.func.value, ast.Name):  # pytest.skip(...)
                offenders.append(f"{name}:{node.lineno}")
            elif node.func.attr == "skipif" and "cuda" not in ast.unparse(node.args[0] if node.args else node):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"skips that do not depend on a peer, the data or a GPU: {offenders}"
