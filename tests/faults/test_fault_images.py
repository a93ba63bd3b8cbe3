"""Category 5: images that are not what they seem. 16-bit images are scaled to 8 bits (not clipped), every
format Pillow reads is used (any case of extension) and anything else is listed, and a training set in which
nothing is readable is one line (exit 2), not a numpy LinAlgError."""

import numpy as np
import pytest
from fault_helpers import image, one_line, tree
from PIL import Image

from cnnzoo import cli
from cnnzoo.data import DataError, build_data, check_folder
from cnnzoo.data.folder import read_rgb, scan_folder


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)  # 0 .. 65535
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    rgb, mode = read_rgb(str(path))
    pixels = np.asarray(rgb)[..., 0].astype(int)
    assert mode == "I;16"
    assert np.array_equal(pixels.ravel(), np.arange(256))  # each 16-bit value v becomes v / 257
    clipped = np.asarray(Image.open(path).convert("RGB"))[..., 0]
    assert (clipped == 255).sum() > 200  # what Pillow's own conversion does: the reason for this code


def test_32_bit_and_float_images_are_scaled(tmp_path):
    for array, mode in ((np.full((4, 4), 40000, np.int32), "I"), (np.full((4, 4), 0.5, np.float32), "F")):
        path = tmp_path / f"{mode}.tif"
        Image.fromarray(array, mode).save(path)
        rgb, _ = read_rgb(str(path))
        assert np.asarray(rgb).max() == {"I": round(40000 / 257), "F": 128}[mode], mode


FORMATS = {"a.gif": "GIF", "b.webp": "WEBP", "c.tif": "TIFF", "d.jfif": "JPEG", "E.JPG": "JPEG", "f.PNG": "PNG",
           "g.bmp": "BMP", "h.Jpeg": "JPEG", "i.tiff": "TIFF", "j.ppm": "PPM"}


def test_every_pillow_format_is_used_and_other_files_are_listed(tmp_path):
    root = tree(tmp_path / "formats")
    for i, (name, fmt) in enumerate(FORMATS.items()):
        image(root / "train" / "a" / name, seed=100 + i, fmt=fmt)
    (root / "train" / "a" / "labels.csv").write_text("a,b\n")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0" * 10)
    scan = scan_folder(root)
    used = {p.rsplit("/", 1)[1] for p in scan.train.paths}
    assert set(FORMATS) <= used
    assert sorted((p.rsplit("/", 1)[1], why) for p, why in scan.train.ignored) == [
        (".DS_Store", "hidden file"), ("labels.csv", ".csv is not an image format Pillow reads")]
    report = check_folder(root, workers=0)
    assert report.counts["train"]["a"] == 4 + len(FORMATS) and not report.unreadable
    assert "ignored, not image files: 2" in report.lines()


def test_a_training_set_with_nothing_readable_is_one_line(tmp_path, capsys):
    root = tmp_path / "garbage"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                (root / split / c / f"{i}.jpg").write_bytes(b"not a jpeg at all" * (i + 1))
    for in_memory in (True, False):
        with pytest.raises(DataError, match=r"no readable image in .*garbage/train: all 6 image files failed"):
            build_data(f"folder:{root}", batch_size=2, workers=0, in_memory=in_memory)
    assert cli.main(["train", "--data", f"folder:{root}", "--epochs", "1", "tensorboard=false"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "no readable image" in line and "LinAlgError" not in line


def test_only_non_images_is_one_line(tmp_path):
    root = tmp_path / "texts"
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no image files that Pillow can open.*1 other entries were passed"):
        scan_folder(root)
