"""`cnnzoo reproduce`: every experiment runs end to end at the smoke scale and writes its report folder."""

import json
import subprocess
import sys

import pytest
import torch

import cnnzoo
from cnnzoo.engine import load_config, train
from cnnzoo.engine.checkpoint import save_weights
from cnnzoo.reproduce import EXPERIMENTS, run

SIX = ["stochastic-depth", "xception-ablation", "polyinception-ablation", "polynet-insertion", "googlenet-aux",
       "cnn-overview"]


def test_list_names_the_six_with_claim_and_costs():
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "reproduce", "--list"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in SIX:
        assert any(line.startswith(f"{name}: ") for line in result.stdout.splitlines()), name
    for scale in ("smoke", "cpu", "paper"):
        assert result.stdout.count(f"    {scale}: ") == len(SIX)


@pytest.mark.parametrize("name", SIX)
def test_smoke_scale_writes_the_report_folder(name, tmp_path):
    torch.set_num_threads(1)
    out = run(name, "smoke", out=tmp_path / name, say=lambda line: None)
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    if name == "cnn-overview":
        assert (out / "overview.png").stat().st_size > 10_000
        rows = {r["model"]: r for r in results}
        assert rows["resnet50_paper"]["params"] == 25_557_032 and rows["alexnet"]["top1_err"] == 40.7
        assert "| 2012 | `alexnet` | 60,965,224 |" in report
        return
    exp = EXPERIMENTS[name]
    assert set(results["arms"]) == set(exp.arms)
    for arm, runs in results["arms"].items():
        assert (out / f"metrics-{arm.replace(' ', '-')}-seed0.csv").is_file()
        assert 0.0 <= runs[0]["test_error"] <= 100.0 and runs[0]["train_seconds"] > 0
        assert f"| {arm} |" in report
    for figure in ("curves.png", "bars.png"):
        assert (out / figure).stat().st_size > 5_000
    assert exp.claim in report and "Scale: `smoke`" in report and "pipeline check" in report
    if exp.paper_order:
        assert f"The paper: {exp.paper_order}." in report and "Ranking, lowest test error first" in report
    if name == "stochastic-depth":
        assert "Training time, stochastic / constant depth" in report and (out / "grad_flow.png").is_file()
        assert "E[L~] = 6.50 of 9" in report  # ResNet-20: sum of p_l = 1 - l/9 * 0.5


@pytest.mark.parametrize("name", [n for n in SIX if n != "cnn-overview"])
def test_every_scale_of_every_arm_is_a_valid_config(name):
    exp = EXPERIMENTS[name]
    for scale, sc in exp.scales.items():
        for arm, values in exp.arms.items():
            overrides = {**sc.overrides, **values, **sc.arm_overrides.get(arm, {})}
            overrides.pop("insert_from", None)
            cfg = load_config(None, overrides)  # raises ConfigError, as `cnnzoo reproduce` would after minutes
            assert cfg.model == values.get("model", sc.overrides.get("model", cfg.model)), (scale, arm)


def test_ranking_orders_arms_by_mean_error_at_the_first_or_last_evaluation():
    from cnnzoo.reproduce.report import ranking

    results = {"a": [{"test_errors": [50.0, 30.0]}, {"test_errors": [40.0, 32.0]}],  # means 45, 31
               "b": [{"test_errors": [44.0, 35.0]}], "c": [{"test_errors": [60.0, 20.0]}]}
    assert ranking(results, "last") == "c (20.00%) < a (31.00%) < b (35.00%)"
    assert ranking(results, "first") == "b (44.00%) < a (45.00%) < c (60.00%)"


def test_verdicts_follow_the_gain_and_its_spread():
    from cnnzoo.reproduce.report import verdict

    exp = EXPERIMENTS["googlenet-aux"]  # "with aux" is expected below the baseline "without aux"

    def says(base, ours):
        results = {"without aux": [{"test_error": e} for e in base], "with aux": [{"test_error": e} for e in ours]}
        return verdict(exp, "cpu", results, "with aux")

    assert says([30.0], [29.0])[0] == "reproduced"
    assert says([30.0], [30.05]) == ("not at this scale", "-0.05 points against without aux, within the noise of "
                                                           "a reduced run")
    assert says([30.0], [42.0]) == ("not at this scale", "12.00 points higher than without aux (one seed of a "
                                                         "reduced run)")
    assert says([30.0, 30.2], [40.0, 40.2])[0] == "contradicted"
    assert says([30.0, 34.0], [29.0, 33.0])[0] == "not at this scale"  # a 1-point gain inside a 2.8-point spread
    assert verdict(exp, "smoke", {}, "with aux")[0] == "pipeline check"
    # one seed on 500 test images: 80 % vs 82 % error is inside the sampling error (2.5 points), 75 vs 80 is not
    results = {"without aux": [{"test_error": 82.0}], "with aux": [{"test_error": 80.0}]}
    assert verdict(exp, "cpu", results, "with aux", test_images=500) == (
        "not at this scale", "+2.00 points against without aux, within the noise of a reduced run")
    results = {"without aux": [{"test_error": 80.0}], "with aux": [{"test_error": 75.0}]}
    assert verdict(exp, "cpu", results, "with aux", test_images=500) == (
        "reproduced", "5.00 points lower than without aux (noise 2.64)")


def test_a_finished_arm_is_read_not_retrained(tmp_path):
    out = run("stochastic-depth", "smoke", out=tmp_path, say=lambda line: None)
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("last.ckpt")}
    said = []
    run("stochastic-depth", "smoke", out=tmp_path, say=said.append)
    assert said == [] and before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("last.ckpt")}


def test_cpu_scale_without_data_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "reproduce", "stochastic-depth", "--scale", "cpu",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "give --data" in result.stderr and "Traceback" not in result.stderr


def test_init_weights_starts_training_from_a_file(tmp_path):
    """The config key the insertion experiment uses: the model starts from the file's weights."""
    model = cnnzoo.create_model("resnet20", num_classes=10, in_chans=1)
    torch.nn.init.constant_(model.fc.bias, 3.0)
    save_weights(tmp_path / "start.safetensors", model, {"model": "resnet20"})
    cfg = load_config(None, dict(init_weights=str(tmp_path / "start.safetensors"), epochs=1, lr=1e-9, warmup=0,
                                 out=str(tmp_path), name="run", tensorboard=False, batch_size=512))
    result = train(cfg)
    trained, _ = cnnzoo.engine.trainer.load_trained(result.run_dir)
    assert torch.allclose(trained.fc.bias, torch.full((10,), 3.0), atol=1e-5)


def test_index_has_a_row_per_report_with_its_verdicts(tmp_path):
    run("stochastic-depth", "smoke", out=tmp_path / "stochastic-depth", say=lambda line: None)
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "reproduce", "--index", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [line for line in (tmp_path / "README.md").read_text().splitlines() if line.startswith("| [")]
    assert len(rows) == 1 and "constant depth 6.41%" in rows[0]
    assert "stochastic depth: pipeline check; training time: pipeline check" in rows[0]
