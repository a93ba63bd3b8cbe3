"""`cnnzoo compare`: figures side by side, a measured speed, and a chart that is a real PNG."""

import pytest
import torch
import torchvision

from cnnzoo.analysis.complexity import flop_counter_macs
from cnnzoo.analysis.compare import compare, format_comparison, plot_comparison
from cnnzoo.cli import main


@pytest.fixture(scope="module")
def rows():
    return compare(["resnet20", "resnet50", "resnet18"], speed=False)


def test_side_by_side_figures(rows):
    r20, r50, r18 = rows
    assert (r20.img_size, r20.params, r20.depth, r20.top1_err) == (32, 269_722, 20, 8.75)
    assert (r50.img_size, r50.params, r50.depth, r50.top1_err, r50.top5_err) == (224, 25_557_032, 50, 23.87, 7.138)
    assert round(r50.gmacs, 3) == 4.089 and r50.infer_img_s is None and r50.train_steps_s is None
    assert r18.top1_err is None


def test_common_input_size_changes_macs_not_params():
    r50 = compare(["resnet50"], input_size=112, speed=False)[0]
    assert r50.params == 25_557_032 and r50.img_size == 112
    with torch.device("meta"):
        reference = flop_counter_macs(torchvision.models.resnet50(), 112)[""]
    assert r50.gmacs * 1e9 == pytest.approx(reference, abs=1) and reference < 4_089_184_256 / 3.5


def test_speed_is_measured():
    row = compare(["resnet20"], speed=True, steps=1, device="cpu")[0]
    assert row.infer_img_s > 0 and row.train_steps_s > 0


def test_plot_writes_png_and_names_models_left_out(rows, tmp_path):
    path = tmp_path / "cmp.png"
    left_out = plot_comparison(rows, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert left_out == ["resnet18"]
    with pytest.raises(ValueError, match="has a paper top1"):
        plot_comparison(rows[2:], str(path))


def test_cli_compare_csv(capsys):
    assert main(["compare", "resnet20", "resnet56", "--no-speed", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model,img_size,params,gmacs,depth,top1_err")
    assert lines[1].startswith("resnet20,32,269722,") and lines[2].startswith("resnet56,32,853018,")
    assert format_comparison([], "text").startswith("model")
