"""Category 1: the disk fills while saving. Every write goes through cnnzoo.files.atomic_write: on a real full
file system (tmpfs) it stops with one line (what, where, how much), keeps the previous file, leaves no temporary
file, and the run resumes once there is space."""

import errno
import os

import pytest
import torch
from fault_helpers import fill, full_disk, one_line, tree  # noqa: F401  (full_disk: a fixture)
from standin_data import synthetic

from cnnzoo import cli, create_model
from cnnzoo.engine import trainer
from cnnzoo.engine.checkpoint import save_weights
from cnnzoo.engine.metrics import RunLog, plot_curves
from cnnzoo.files import WriteError, atomic_write, load_checkpoint, save_checkpoint, write_bytes


def temps(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_training_on_a_disk_that_fills_stops_in_one_line_and_resumes(full_disk, monkeypatch, capsys):
    ballast = []

    def fill_after_first_epoch(epoch, batch):  # epoch 1 is saved; then the disk fills during epoch 2
        if epoch == 1 and batch == 0 and not ballast:
            ballast.append(fill(full_disk, leave=64 * 1024))

    monkeypatch.setattr(trainer, "build_data", lambda spec, batch_size, **kw: synthetic(
        batch_size=batch_size, hook=fill_after_first_epoch))
    args = ["train", "--out", full_disk, "--epochs", "3", "--batch-size", "16", "name=run", "tensorboard=false"]
    assert cli.main(list(map(str, args))) == 2
    line = one_line(capsys.readouterr().err)
    run = full_disk / "run"
    assert line.startswith(f"cnnzoo: could not write {run}/") and "the disk is full (" in line
    assert " needed, " in line and " free in " in line  # how much space: needed and free
    assert f"--resume {run}" in line
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 1  # the previous good checkpoint, whole
    assert temps(full_disk) == []

    ballast[0].unlink()  # space again: the run continues from epoch 1
    assert cli.main(["train", "--resume", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("top1=")
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 3


def _writers(folder):
    """Every kind of file cnnzoo writes, each writing to ``folder/name``."""
    model = create_model("resnet20", num_classes=2, in_chans=1)
    history = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_top1": 50.0, "test_loss": 1.0, "test_top1": 50.0,
                "test_top5": 100.0, "epoch_seconds": 1.0, "images_per_s": 10.0}]

    return {
        "last.ckpt": lambda p: save_checkpoint(p, {"model": model.state_dict(), "epoch": 1}),
        "best.safetensors": lambda p: save_weights(p, model, {"model": "resnet20"}),
        "metrics.csv": lambda p: RunLog(p.parent, tensorboard=False).write(history * 2000, 1),
        "curves.png": lambda p: plot_curves(history, p),
        "model.pt": lambda p: atomic_write(p, lambda f: torch.jit.save(torch.jit.script(torch.nn.Linear(300, 300)),
                                                                           f)),
        "notes.bin": lambda p: write_bytes(p, os.urandom(300_000)),
    }


def test_every_writer_keeps_the_previous_file_on_a_full_disk(full_disk):
    writers = _writers(full_disk)
    for name, write in writers.items():
        write(full_disk / name)
    before = {name: (full_disk / name).read_bytes() for name in writers}
    fill(full_disk)
    for name, write in writers.items():
        with pytest.raises(WriteError, match=rf"could not write {full_disk}/{name}: the disk is full .*"
                                             rf"the previous {name} is kept"):
            write(full_disk / name)
        assert (full_disk / name).read_bytes() == before[name], name
    assert temps(full_disk) == []


def test_decode_cache_on_a_full_disk_is_skipped_with_a_warning(full_disk, tmp_path, monkeypatch, caplog):
    from cnnzoo.data import build_data

    monkeypatch.setenv("CNNZOO_CACHE", str(full_disk / "cache"))
    (full_disk / "cache").mkdir()
    fill(full_disk)
    data = build_data(f"folder:{tree(tmp_path / 'data')}", batch_size=4, workers=0)
    assert data.num_classes == 2
    assert any("could not write the decoded-folder cache" in r.getMessage() and "disk is full" in r.getMessage()
               for r in caplog.records)
    assert temps(full_disk) == []


def test_compare_plot_and_table_on_a_full_disk(full_disk, capsys, monkeypatch):
    from cnnzoo.analysis import table
    from cnnzoo.analysis.compare import compare, plot_comparison
    from cnnzoo.analysis.table import BEGIN, END

    monkeypatch.setattr(table, "model_table", lambda speeds=None: "| a small table |\n")  # the write is under test
    rows = compare(["resnet20", "alexnet"], speed=False)
    plot_comparison(rows, full_disk / "plot.png", "top1_err")
    readme = full_disk / "README.md"
    readme.write_text(f"# models\n{BEGIN}\n{END}\n")
    before = (full_disk / "plot.png").read_bytes(), readme.read_bytes()
    fill(full_disk)
    with pytest.raises(WriteError, match="the disk is full"):
        plot_comparison(rows, full_disk / "plot.png", "top1_err")
    assert cli.main(["table", "--write", str(readme)]) == 2
    assert "the disk is full" in one_line(capsys.readouterr().err)
    assert ((full_disk / "plot.png").read_bytes(), readme.read_bytes()) == before
    assert temps(full_disk) == []


def test_a_failing_fsync_is_a_clean_error_without_a_real_disk(tmp_path, monkeypatch):
    """The same promise where no small file system can be mounted: the OS refuses at fsync (ENOSPC)."""
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"epoch": 1})

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(WriteError, match=r"could not write .*last.ckpt: the disk is full .*previous last.ckpt is kept"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and temps(tmp_path) == []


def test_a_bug_inside_a_writer_is_not_called_a_full_disk(tmp_path):
    """Only file-system failures become WriteError; a programming error stays itself (exit 1 on the CLI)."""
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "x", lambda f: 1 / 0)
    assert list(tmp_path.iterdir()) == []
