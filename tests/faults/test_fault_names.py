"""Category 4: hostile file names and trees. check-data, train and the decode cache report or skip them
(counted), never crash, and never open a FIFO (which would block for ever)."""

import contextlib
import io
import os
import socket
from pathlib import Path

import pytest
from fault_helpers import cnnzoo, image, tree

from cnnzoo import cli
from cnnzoo.data import build_data, check_folder


@pytest.fixture
def hostile(tmp_path):
    root = tree(tmp_path / "hostile")
    cat = root / "train" / "a"
    image(Path(os.fsdecode(bytes(cat) + b"/caf\xe9-latin1.jpg")), seed=50)  # a name that is not UTF-8
    os.mkfifo(cat / "fifo.jpg")  # opening it for reading would block for ever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(cat / "socket.png"))
    (cat / "dangling.jpg").symlink_to(cat / "nowhere.jpg")
    (cat / "loop.jpg").symlink_to(cat / "loop.jpg")
    (cat / "sub").mkdir()  # a folder inside a class folder
    (root / "train" / "b" / "notes.txt").write_text("not an image\n")
    (root / "train" / "loop").symlink_to(root / "train" / "loop")  # a class-level symlink loop
    yield root
    sock.close()


SPECIAL = {"fifo.jpg": "FIFO (named pipe), not a file", "socket.png": "socket, not a file",
           "dangling.jpg": "dangling symlink", "loop.jpg": "symlink loop"}


def test_check_data_lists_every_hostile_entry_and_never_hangs(hostile):
    done = cnnzoo("check-data", hostile, "--workers", "0", timeout=300)  # a FIFO opened would hang: timeout fails
    assert done.returncode == 2, done.stderr
    out = done.stdout
    assert "train      9 readable images (a 5, b 4)" in out  # caf\xe9-latin1.jpg is one of them
    assert f"unreadable, skipped when training: {len(SPECIAL)}" in out
    for name, why in SPECIAL.items():
        assert f"  train/a/{name}: {why}" in out
    assert "ignored, not image files: 2" in out
    assert "  train/a/sub: folder inside a class folder (not searched)" in out
    assert "  train/b/notes.txt: .txt is not an image format Pillow reads" in out
    assert out.rstrip().endswith(f"{len(SPECIAL)} problem(s) found")


def test_the_non_utf8_name_is_used_and_shown_escaped(hostile):
    report = check_folder(hostile, workers=0)
    assert report.counts["train"]["a"] == 5  # four images and caf\xe9
    assert sum(1 for line in report.lines() if "\\x" in line) == 0  # it is readable: not listed
    lines = "\n".join(report.lines())
    lines.encode("utf-8")  # printable anywhere (no surrogates)


def test_training_skips_and_counts_them_and_the_cache_holds(hostile, tmp_path, capsys):
    for run in ("decodes", "cached"):  # the second run reads the decode cache
        assert cli.main(["train", "--data", f"folder:{hostile}", "--model", "resnet20", "--epochs", "1",
                         "--batch-size", "4", "--out", str(tmp_path / "runs"), f"name={run}", "tensorboard=false",
                         "workers=0", "device=cpu"]) == 0
        assert f"skipped {len(SPECIAL)} unreadable files" in capsys.readouterr().out
        listing = (tmp_path / "runs" / run / "skipped.txt").read_text()
        assert sorted(line.split("\t")[0].rsplit("/", 1)[1] for line in listing.splitlines()) == sorted(SPECIAL)


def as_nobody(fn, folders):
    """``fn()`` (returning text) in a forked child that runs as user nobody; the folders it needs opened to it."""
    modes = {p: p.stat().st_mode for p in folders}
    for p in folders:
        p.chmod(modes[p] | 0o005)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report, leave without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            text = fn()
        except BaseException as e:  # noqa: BLE001 - the parent asserts on it
            text = f"child failed: {type(e).__name__}: {e}"
        os.write(w, text.encode("utf-8", "backslashreplace"))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    for p, mode in modes.items():
        p.chmod(mode)
    return text


def test_unreadable_class_folder_is_reported(hostile, tmp_path, monkeypatch):
    """An unreadable folder. Root reads everything, so the check runs in a child that drops to user nobody."""
    locked = hostile / "val" / "b"
    locked.chmod(0)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    monkeypatch.setenv("CNNZOO_CACHE", str(cache))

    def check():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = cli.main(["check-data", str(hostile), "--workers", "0"])
        return f"{status}\n{out.getvalue()}"

    try:
        if os.geteuid() == 0:
            # the folders from pytest's own root (pytest-of-USER, mode 0700) down, however deep (xdist adds a level)
            below_root = [p for p in hostile.parents if any(q.name.startswith("pytest-of-") for q in (p, *p.parents))]
            text = as_nobody(check, below_root)
        else:
            text = check()
    finally:
        locked.chmod(0o755)
    status, out = text.split("\n", 1)
    assert status == "2", text
    assert "  val/b: folder cannot be read (Permission denied)" in out


def test_build_data_counts_special_files_in_skipped(hostile):
    data = build_data(f"folder:{hostile}", batch_size=4, workers=0, in_memory=True)
    reasons = {os.path.basename(p): why for p, why in data.skipped}
    assert reasons == SPECIAL
