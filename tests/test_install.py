"""The install a user gets: cnnzoo built as a wheel, installed (not editable) into a fresh venv, run from
a folder outside the source tree. Marked ``wheel`` (and ``heavy``): `pytest -m wheel` runs it alone.

To stay near a minute, the fresh venv borrows the heavy third-party packages (torch, torchvision, ...)
from the environment running the tests through a ``.pth`` file, instead of downloading gigabytes; cnnzoo
itself, its recipes and its digits come only from the wheel. scikit-learn and scipy are made unimportable
in the fresh venv, so the run proves that training on the digits needs neither.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnzoo

ROOT = Path(__file__).parents[1]
HIDE = "import sys; sys.modules.update(sklearn=None, scipy=None)\n"  # importing either then fails


def reuse_setuptools() -> list[str]:
    """Build with this environment's setuptools where it is new enough (pyproject asks for >= 77): a fresh
    isolated build environment costs half a minute; else pip makes one (a fresh venv's setuptools is older)."""
    try:
        import setuptools
    except ImportError:
        return []
    return ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 77 else []


def run(*args, **kwargs):
    # without the caller's PYTHONPATH: a source tree on it would make pip see cnnzoo installed already
    kwargs.setdefault("env", {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.mark.wheel
@pytest.mark.heavy
def test_wheel_installs_and_trains_a_packaged_recipe_outside_the_checkout(tmp_path):
    # build from a copy holding only what the wheel is made of: nothing from the checkout leaks in
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", *reuse_setuptools(), "-q", "-w", tmp_path / "dist", source)
    wheel, = (tmp_path / "dist").glob("cnnzoo-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "borrowed.pth").write_text(f"{Path(torch.__file__).parents[1]}\n")  # torch and the other deps
    (site / "hide_sklearn.pth").write_text(HIDE)
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel)  # not -e: a real install

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    where = run(python, "-c", "import cnnzoo; print(cnnzoo.__file__)", cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    hidden = subprocess.run([python, "-c", "import sklearn"], capture_output=True, text=True, env=env)
    assert hidden.returncode != 0 and "import of sklearn halted" in hidden.stderr
    cli = venv / "bin" / "cnnzoo"
    assert run(cli, "--version", cwd=elsewhere, env=env).stdout == f"cnnzoo {cnnzoo.__version__}\n"
    assert "resnet_cifar10" in run(cli, "recipes", cwd=elsewhere, env=env).stdout
    trained = run(cli, "train", "--config", "resnet_cifar10", "--data", "digits", "--epochs", "1", "name=run",
                  "tensorboard=false", cwd=elsewhere, env=env)
    assert trained.stdout.splitlines()[-1].startswith("top1=")
    assert (elsewhere / "runs" / "run" / "last.ckpt").is_file()
