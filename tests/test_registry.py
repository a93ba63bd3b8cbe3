import pytest
import torch

import cnnzoo
from conftest import require_peer


def test_list_models_is_sorted_and_filters_by_pattern():
    names = cnnzoo.list_models()
    assert names == sorted(names)
    assert cnnzoo.list_models("resnet1*") == ["resnet101", "resnet101_paper", "resnet110", "resnet1202", "resnet152",
                                              "resnet152_paper", "resnet18"]
    assert cnnzoo.list_models("nothing*") == []


def test_unknown_name_lists_closest():
    with pytest.raises(ValueError, match="closest: resnet50"):
        cnnzoo.create_model("resnt50")


def test_unknown_keyword_is_an_error_not_ignored():
    with pytest.raises(ValueError, match="wdith_multiplier"):
        cnnzoo.create_model("resnet20", wdith_multiplier=2)


def test_create_model_defaults_and_overrides():
    model = cnnzoo.create_model("resnet20")
    assert model.default_cfg.num_classes == 10 and model.fc.out_features == 10
    model = cnnzoo.create_model("resnet20", num_classes=5, in_chans=1)
    assert model.fc.out_features == 5 and model.conv1.in_channels == 1
    assert model.default_cfg.input_size == (1, 32, 32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_torchvision_resnet50_macs_are_exact():
    torchvision = require_peer("torchvision")
    assert cnnzoo.count_macs(torchvision.models.resnet50(), (3, 224, 224)) == 4_089_184_256


@pytest.mark.parametrize("name, kwargs, message", [
    ("googlenet", {"layout": "x"}, "googlenet: layout must be one of 'paper', 'torchvision', got 'x'"),
    ("googlenet", {"layout": "torchvision"}, "googlenet sets 'layout' itself"),
    ("googlenet", {"aux_logits": "yes"}, "googlenet: aux_logits must be true or false, got 'yes'"),
    ("googlenet", {"dropout": "a"}, "googlenet: dropout must be a number or None, got 'a'"),
    ("googlenet", {"auxlogits": True},
     "googlenet takes no keyword 'auxlogits' (did you mean 'aux_logits'?); it accepts: aux_logits, dropout,"),
    ("resnet50", {"drop_path_mode": "x"}, "drop_path_mode"),
    ("resnet50", {"num_classes": -1}, "num_classes must be >= 0, got -1"),  # 0 is timm's "no classifier"
])
def test_bad_keywords_are_one_line_value_errors_naming_what_is_accepted(name, kwargs, message):
    with pytest.raises(ValueError) as info:
        cnnzoo.create_model(name, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_model_says_which_keywords_it_accepts():
    from cnnzoo.registry import accepted_keywords

    for name in cnnzoo.list_models():
        assert {"num_classes", "in_chans"} <= set(accepted_keywords(name)), name
