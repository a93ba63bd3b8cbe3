from pathlib import Path

import pytest
import torch

import cnnzoo
from cnnzoo.engine import ConfigError, TrainConfig, build_optimizer, build_scheduler, load_config
from cnnzoo.engine.config import field_names, parse_assignments, to_yaml

CONFIGS = sorted((Path(cnnzoo.__file__).parent / "configs").glob("*.yaml"))  # the packaged recipes


def test_layers_override_in_order(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: resnet56\nlr: 0.2\nweight_decay: 1e-4\nmilestones: [30, 60]\n")
    cfg = load_config(recipe, {"lr": 0.05}, parse_assignments(["epochs=3", "model_kwargs.drop_path_mode=row"]))
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.milestones) == ("resnet56", 0.05, 3, [30.0, 60.0])
    assert cfg.weight_decay == 1e-4  # YAML reads 1e-4 as a string; the float field accepts it
    assert cfg.model_kwargs == {"drop_path_mode": "row"}
    assert cfg.batch_size == TrainConfig().batch_size


def test_written_config_reads_back_identically(tmp_path):
    cfg = load_config(None, {"model": "resnet32", "milestones": [1, 2], "model_kwargs": {"a": 1}, "name": None})
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "config.yaml") == cfg


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(None, {"learning_rate": 0.1})
    message = str(e.value)
    assert "unknown config key 'learning_rate'" in message
    assert all(name in message for name in field_names())


@pytest.mark.parametrize("key, value, expected", [
    ("epochs", "many", "expects int"),
    ("epochs", 2.5, "expects int"),
    ("lr", True, "expects float"),
    ("nesterov", "yes", "expects bool"),
    ("optimizer", "adam", "expects sgd | rmsprop_tf | rmsprop"),
    ("milestones", 30, "expects a list of float"),
])
def test_wrong_type_names_key_and_type(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, {key: value})


def test_bad_assignment_and_missing_file():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["lr0.1"])
    with pytest.raises(ConfigError, match="no config file 'configs/nope.yaml' and no packaged recipe of that name"):
        load_config("configs/nope.yaml")


def test_every_dataclass_field_is_commented():
    source = Path(cnnzoo.engine.config.__file__).read_text().split("class TrainConfig")[1].split("\ndef ")[0]
    for name in field_names():
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{name}:"))
        assert "  # " in line, f"TrainConfig.{name} has no comment"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_parses_builds_optimizer_schedule_and_model(path):
    text = path.read_text()
    keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert all("#" in line for line in text.splitlines() if line and not line.startswith("#")), "uncommented field"
    cfg = load_config(path)
    assert set(keys) <= set(field_names())
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(cfg, torch.nn.ParameterList(params))
    steps = (50_000 if cfg.data.startswith("cifar") else 1_281_167) // cfg.batch_size  # CIFAR / ImageNet train
    sched = build_scheduler(cfg, opt, steps_per_epoch=steps)
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * (cfg.warmup_start if cfg.warmup else 1))
    assert sched.lr_lambdas[0](cfg.epochs * steps - 1) < 1.0  # every recipe decays the rate by the end
    assert cfg.model in cnnzoo.list_models(), f"{path.name}: model {cfg.model!r} is not registered"
    kwargs = dict(cfg.model_kwargs, **({"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}))
    with torch.device("meta"):
        model = cnnzoo.create_model(cfg.model, **kwargs)
    assert cnnzoo.count_params(model) > 0


def test_stochastic_depth_recipe_is_the_papers():
    cfg = load_config("stochastic_depth_cifar10")
    assert (cfg.model, cfg.drop_path_rate, cfg.epochs, cfg.lr) == ("resnet110", 0.5, 500, 0.1)
    assert cfg.milestones == [250, 375] and cfg.schedule_unit == "epoch" and cfg.gamma == 0.1
    assert (cfg.nesterov, cfg.weight_decay, cfg.batch_size, cfg.momentum) == (True, 1e-4, 128, 0.9)


def test_a_recipe_is_found_by_name_or_by_path(tmp_path, monkeypatch, capsys):
    from cnnzoo.cli import main
    from cnnzoo.engine.config import recipes

    assert len(CONFIGS) >= 9 and sorted(recipes()) == [p.stem for p in CONFIGS]
    by_path = load_config(next(p for p in CONFIGS if p.stem == "resnet_cifar10"))
    assert load_config("resnet_cifar10") == load_config("resnet_cifar10.yaml") == by_path
    assert by_path.model == "resnet20" and by_path.milestones
    with pytest.warns(DeprecationWarning, match="give --config resnet_cifar10"):
        assert load_config("configs/resnet_cifar10.yaml") == by_path  # the checkout's old path, for one release
    with pytest.raises(ConfigError, match="did you mean 'resnet_cifar10'"):
        load_config("resnet_cifar")
    own = tmp_path / "resnet_cifar10.yaml"  # a file of that name here wins over the packaged one
    own.write_text("model: resnet56\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("resnet_cifar10.yaml").model == "resnet56"
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(recipes())
    assert any(line.startswith("resnet_cifar10 ") and "Deep Residual Learning" in line for line in lines)
