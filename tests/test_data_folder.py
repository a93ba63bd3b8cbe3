import logging
import os

import numpy as np
import pytest
import torch
from conftest import make_folder, write_image

from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import DataError, build_data, check_folder
from cnnzoo.data import folder as folder_module

BAD = {"truncated.jpg": "corrupt image", "zero.jpg": "empty file (0 bytes)", "notes.jpg": "not an image"}


def names(pairs):
    return {os.path.basename(path): reason for path, reason in pairs}


def test_bad_files_are_skipped_converted_and_reported_once(bad_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="cnnzoo.data"):
        data = build_data(str(bad_folder), batch_size=64, augment="none")
    assert data.classes == ["cat", "dog", "eel", "fish"] and data.num_classes == 4
    skipped = names(data.skipped)
    assert skipped.keys() == BAD.keys() and all(skipped[k].startswith(v) for k, v in BAD.items())
    # 6 good images per class, plus the RGBA, grayscale and CMYK files converted to RGB.
    _, labels = next(iter(data.train.epoch(0)))
    assert torch.bincount(labels, minlength=4).tolist() == [6, 8, 0, 7]
    _, labels = next(iter(data.test.epoch(0)))
    assert torch.bincount(labels, minlength=4).tolist() == [3, 3, 0, 0]
    listed = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(listed) == 1 and all(k in listed[0].getMessage() for k in BAD)
    text = caplog.text
    assert "train/eel holds no images" in text and "eel, fish have no folder" in text


def test_odd_formats_become_the_same_rgb_pixels(bad_folder):
    report = check_folder(bad_folder, workers=0)
    assert names(report.converted) == {"alpha.png": "RGBA", "gray.jpg": "L", "cmyk.jpg": "CMYK"}
    data = build_data(str(bad_folder), batch_size=64, augment="none")
    images = data.train.images  # decoded uint8, in file order with the unreadable ones left out
    files = [os.path.basename(p) for p in folder_module.scan_folder(bad_folder).train.paths]
    files = [f for f in files if f not in BAD]
    gray = images[files.index("gray.jpg")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    rgba = torch.from_numpy(np.array(Image.open(bad_folder / "train/dog/alpha.png"))).permute(2, 0, 1)
    assert torch.equal(images[files.index("alpha.png")], rgba[:3])  # alpha dropped, colours kept


@pytest.mark.parametrize("in_memory", [True, False])
def test_strict_refuses_before_training_listing_every_bad_file(bad_folder, in_memory):
    with pytest.raises(DataError) as error:
        build_data(str(bad_folder), batch_size=8, strict=True, in_memory=in_memory, workers=0)
    message = str(error.value)
    assert message.startswith("3 unreadable file(s)") and "\n" not in message
    assert all(f"{name}: {reason}" in message for name, reason in BAD.items() if "(" not in reason)
    assert names(error.value.bad).keys() == BAD.keys()


def test_workers_skip_files_that_fail_when_loaded(bad_folder, caplog):
    """Worker path: the zero-byte file is known from the scan; the truncated and text files only fail when a
    DataLoader worker decodes them. Every epoch still delivers full batches."""
    data = build_data(str(bad_folder), batch_size=4, in_memory=False, workers=2, augment="cifar", img_size=32)
    assert names(data.skipped).keys() == {"zero.jpg"}
    with caplog.at_level(logging.WARNING, logger="cnnzoo.data"):
        for epoch in range(2):
            shapes = [x.shape for x, _ in data.train.epoch(epoch)]
            assert shapes == [(4, 3, 32, 32)] * len(data.train)
    assert names(data.skipped).keys() == BAD.keys()
    assert sum("truncated.jpg" in r.getMessage() for r in caplog.records) == 1  # logged once, not per epoch


def test_class_in_val_missing_from_train_is_an_error(tmp_path):
    root = make_folder(tmp_path / "f")
    write_image(root / "val" / "horse" / "0.jpg")
    with pytest.raises(DataError, match=r"class folder\(s\) horse in .*val have no counterpart in .*train"):
        build_data(str(root), batch_size=4)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: (root / "val").mkdir(parents=True), "has no train/ sub-folder"),
    (lambda root: (root / "train" / "a").mkdir(parents=True), "has no val/ or test/ sub-folder"),
    (lambda root: write_image(root / "train" / "a" / "0.jpg") and (root / "test" / "a").mkdir(parents=True),
     "test holds no image files"),
])
def test_unusable_trees_say_what_a_tree_needs(tmp_path, make, message):
    make(tmp_path / "t")
    with pytest.raises(DataError, match=message):
        build_data(f"folder:{tmp_path / 't'}", batch_size=4)


def test_decoded_folder_is_cached_until_a_file_changes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "f", per_class=(4, 2))
    first = build_data(str(root), batch_size=4, augment="none")
    calls = []
    real = folder_module.decode_split
    monkeypatch.setattr(folder_module, "decode_split", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = build_data(str(root), batch_size=4, augment="none")
    assert calls == [] and torch.equal(second.train.images, first.train.images)
    write_image(root / "train" / "cat" / "000.jpg", seed=99)  # new content, new mtime
    os.utime(root / "train" / "cat" / "000.jpg", ns=(1, 1))
    third = build_data(str(root), batch_size=4, augment="none")
    assert calls and not torch.equal(third.train.images, first.train.images)


def test_check_data_reports_everything_and_exits_2(bad_folder, capsys):
    assert main(["check-data", str(bad_folder), "--workers", "0"]) == 2
    out = capsys.readouterr().out
    assert "classes    4: cat, dog, eel, fish" in out
    assert "train      21 readable images (cat 6, dog 8, eel 0, fish 7)" in out
    assert "converted to RGB: 3 (CMYK 1, L 1, RGBA 1)" in out
    assert "unreadable, skipped when training: 3" in out and "train/cat/truncated.jpg: corrupt image" in out
    assert "empty class folders: train/eel" in out
    assert "classes missing from the evaluation split: eel, fish" in out
    assert out.rstrip().endswith("6 problem(s) found")


def test_check_data_clean_folder_exits_0(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    assert main(["check-data", f"folder:{root}"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("clean: ready to train")


def test_check_data_bad_path_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["check-data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown data" in err
    assert main(["check-data", f"folder:{tmp_path / 'nowhere'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
