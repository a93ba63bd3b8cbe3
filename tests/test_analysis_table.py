"""The README table joins measured speeds from a results file, so its staleness test stays exact."""

import csv

import cnnzoo
from cnnzoo.analysis.bench import EXTRA_COLUMNS, TIMM_COLUMNS
from cnnzoo.analysis.table import SPEEDS, model_table, read_speeds


def write_speeds(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, TIMM_COLUMNS + EXTRA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def row(model, img_s, mode="infer"):
    measures = dict(samples_per_sec=img_s, step_time=1.0, batch_size=8, img_size=32)
    return dict(model=model, **{f"{mode}_{k}": v for k, v in measures.items()}, param_count=0.27, peak_mem_mb=1,
                gflops=1, device="cpu", channels_last=False, amp=False, compile=False, threads=2, torch="2.14.1")


def test_speed_column_is_joined_from_the_results_file(tmp_path):
    path = tmp_path / "speed.csv"
    write_speeds(path, [row("resnet20", 1234.567), row("resnet20", 1.0, mode="train")])
    assert read_speeds(path)["resnet20"]["infer_samples_per_sec"] == "1234.567"
    table = model_table(path, names=["resnet20", "lenet5"])  # README's test builds the whole table
    line = next(l for l in table.splitlines() if l.startswith("| `resnet20`"))
    assert line.endswith("| 8.75 / - | 1234.6 |")
    assert next(l for l in table.splitlines() if l.startswith("| `lenet5`")).endswith("|  |")  # no row, no speed
    assert "batch 8, 2 thread(s), torch 2.14.1" in table
    assert model_table(path, names=["resnet20", "lenet5"]) == table  # deterministic given the file


def test_no_results_file_leaves_the_column_empty(tmp_path):
    table = model_table(tmp_path / "none.csv", names=["resnet20", "lenet5"])
    assert [l.split()[1] for l in table.splitlines() if l.startswith("| `")] == ["`resnet20`", "`lenet5`"]
    assert all(l.endswith("|  |") for l in table.splitlines() if l.startswith("| `"))


def test_committed_results_name_registered_models_with_timm_columns():
    assert SPEEDS.exists(), f"{SPEEDS} is committed with the repository"
    with open(SPEEDS, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:7] == ["model", "infer_samples_per_sec", "infer_step_time", "infer_batch_size",
                                        "infer_img_size", "infer_gmacs", "param_count"]
        unknown = {r["model"] for r in reader} - set(cnnzoo.list_models())
    assert not unknown, f"speed rows for unregistered models: {sorted(unknown)}"
