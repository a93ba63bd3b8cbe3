"""`cnnzoo bench`: the result's fields are consistent and the CSV speaks timm's column names."""

import csv
import io
import json

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.analysis.bench import benchmark, format_results, make_step, matmul_gflops
from cnnzoo.cli import main

# timm benchmark.py's result rows (https://github.com/huggingface/pytorch-image-models, benchmark.py): the measures
# prefixed by the bench mode, MACs profiled in inference only, param_count moved last, in millions.
TIMM_INFER = ["model", "infer_samples_per_sec", "infer_step_time", "infer_batch_size", "infer_img_size",
              "infer_gmacs", "param_count"]
TIMM_TRAIN = ["model", "train_samples_per_sec", "train_step_time", "train_batch_size", "train_img_size",
              "param_count"]


def test_infer_result_fields():
    r = benchmark("resnet20", "infer", batch_size=2, device="cpu", warmup=0, steps=2)
    assert (r.model, r.mode, r.batch_size, r.img_size, r.param_count) == ("resnet20", "infer", 2, 32, 269_722)
    assert r.gmacs == 40_551_040 / 1e9
    assert r.samples_per_sec == pytest.approx(2 / (r.step_time / 1000))
    assert r.gflops == pytest.approx(2 * 40_551_040 * 2 / (r.step_time / 1000) / 1e9)
    assert r.peak_mem_mb > 0 and r.device == "cpu" and r.threads == torch.get_num_threads()


def test_train_steps_update_the_weights_and_count_three_passes():
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20")
    before = model.fc.weight.detach().clone()
    r = benchmark(model, "train", batch_size=2, input_size=16, device="cpu", warmup=1, steps=1, name="r20")
    assert not torch.equal(before, model.fc.weight)
    assert r.img_size == 16 and r.model == "r20"
    assert r.gflops == pytest.approx(3 * 2 * r.gmacs * 2 / (r.step_time / 1000))


def test_train_step_on_a_model_with_auxiliary_outputs():
    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            x = x.flatten(1)
            return (self.a(x), self.b(x)) if self.training else self.a(x)

    model = Aux()
    make_step(model, torch.randn(2, 4), "train")()
    assert model.a.weight.grad is not None and model.b.weight.grad is None  # loss on the main logits


def test_csv_and_json_speak_timms_columns_and_units():
    r = benchmark("resnet20", batch_size=1, input_size=16, device="cpu", warmup=0, steps=1, channels_last=True)
    rows = list(csv.DictReader(io.StringIO(format_results([r], "csv"))))
    assert list(rows[0])[: len(TIMM_INFER)] == TIMM_INFER
    row = rows[0]
    assert row["param_count"] == "0.27"  # millions, two decimals (269,722 parameters)
    assert float(row["infer_step_time"]) == round(r.step_time, 3)  # milliseconds
    assert float(row["infer_samples_per_sec"]) == round(r.samples_per_sec, 2)
    assert float(row["infer_gmacs"]) == round(r.gmacs, 2) and row["infer_img_size"] == "16"
    assert row["channels_last"] == "True" and "samples_per_sec" not in row
    assert json.loads(format_results([r], "json"))[0]["infer_img_size"] == 16


def test_train_and_mixed_rows_follow_timms_column_order():
    infer = benchmark("resnet20", batch_size=1, input_size=16, device="cpu", warmup=0, steps=1)
    train = benchmark("resnet20", "train", batch_size=2, input_size=16, device="cpu", warmup=0, steps=1)
    header = format_results([train], "csv").splitlines()[0].split(",")
    assert header[: len(TIMM_TRAIN)] == TIMM_TRAIN and "train_gmacs" not in header
    header = format_results([infer, train], "csv").splitlines()[0].split(",")
    assert header[:11] == TIMM_INFER[:-1] + TIMM_TRAIN[1:]


def test_cli_bench_deployed(capsys):
    assert main(["bench", "resnet20", "--deploy", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                 "--device", "cpu", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["model"] == "resnet20 (deployed)" and row["channels_last"] is True
    assert row["infer_batch_size"] == 2 and row["param_count"] == 0.27  # millions


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode 'eval'"):
        make_step(nn.Linear(2, 2), torch.zeros(1, 2), "eval")
    with pytest.raises(ValueError, match="batch_size >= 1"):
        benchmark("resnet20", batch_size=0)
    assert main(["bench", "resnet20", "--deploy", "--mode", "train"]) == 2


def test_matmul_ceiling_is_positive():
    assert matmul_gflops(n=64, steps=2) > 0
