"""Per-layer tables: rows add up to the model, stages follow the resolution, every format parses."""

import csv
import io
import json

import pytest
import torch
from torch import nn

from cnnzoo.analysis.complexity import count_params, meta_model
from cnnzoo.analysis.layers import format_layer_table, layer_table
from cnnzoo.cli import main


@pytest.fixture(scope="module")
def resnet20_table():
    return layer_table(meta_model("resnet20"), name="resnet20")


def test_rows_add_up_to_the_model(resnet20_table):
    t = resnet20_table
    assert t.total.params == 269_722 and t.total.macs == 40_551_040
    assert sum(r.macs for r in t.layers) == t.total.macs
    assert sum(r.params for r in t.layers) == t.total.params
    assert sum(r.macs for r in t.stages) == t.total.macs
    assert sum(r.params for r in t.stages) == t.total.params


def test_first_conv_row(resnet20_table):
    conv1 = resnet20_table.layers[0]
    assert (conv1.name, conv1.type, conv1.output_shape) == ("conv1", "Conv2d", (1, 16, 32, 32))
    assert conv1.params == 16 * 3 * 9
    assert conv1.macs == 16 * 32 * 32 * 3 * 9
    assert conv1.macs_share == pytest.approx(conv1.macs / 40_551_040)


def test_stages_are_runs_of_one_resolution(resnet20_table):
    stages = {r.name: r.output_shape for r in resnet20_table.stages}
    assert stages == {"conv1 .. layer1": (1, 16, 32, 32), "layer2": (1, 32, 16, 16), "layer3": (1, 64, 8, 8),
                      "global_pool .. fc": (1, 10)}


class WithAux(nn.Module):
    """A shared conv called twice, and an auxiliary head that only training runs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.aux = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv(self.conv(x))
        out = self.fc(x.mean((2, 3)))
        return (out, self.aux(x)) if self.training else out


def test_shared_module_rows_and_not_run_heads():
    t = layer_table(WithAux(), (4, 8, 8))
    convs = [r for r in t.layers if r.name == "conv"]
    assert [r.params for r in convs] == [148, 0] and all(r.macs == 4 * 64 * 36 for r in convs)
    assert [(r.name, r.params) for r in t.not_run] == [("aux", 256 * 3 + 3)]
    assert sum(r.params for r in t.layers + t.not_run) == count_params(WithAux())


@pytest.mark.parametrize("fmt", ["text", "csv", "json", "markdown"])
def test_formats(resnet20_table, fmt):
    out = format_layer_table(resnet20_table, fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert {r["level"] for r in rows} == {"layer", "stage", "total"}
        assert rows[0]["name"] == "conv1" and rows[0]["output_shape"] == "16x32x32" and rows[0]["macs"] == "442368"
    elif fmt == "json":
        data = json.loads(out)
        assert data["input_size"] == [3, 32, 32] and data["total"]["macs"] == 40_551_040
        assert len(data["layers"]) == len(resnet20_table.layers)
    elif fmt == "markdown":
        assert out.count("|---|") == 2  # the layer table and the stage table
    else:
        assert "Stage totals" in out and "442,368" in out


def test_cli_info_layers_json(capsys):
    assert main(["info", "resnet18", "--layers", "--format", "json", "--input-size", "64"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "resnet18" and data["input_size"] == [3, 64, 64]
    assert data["layers"][-1]["name"] == "fc"


def test_meta_and_real_tables_agree():
    torch.manual_seed(0)
    import cnnzoo

    real = format_layer_table(layer_table(cnnzoo.create_model("resnet20"), name="resnet20"), "csv")
    assert real == format_layer_table(layer_table(meta_model("resnet20"), name="resnet20"), "csv")
