import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.analysis.complexity import meta_model
from cnnzoo.layers import SeparableConv2d
from cnnzoo.cli import main
from cnnzoo.layers import ConvBnAct
from cnnzoo.models.mobilenet import TABLE_4, TABLE_6, TABLE_7, MobileNetV1
from conftest import require_peer
from peer_models import assert_same_logits

ALPHAS = {1.0: "mobilenet_v1_100", 0.75: "mobilenet_v1_075", 0.5: "mobilenet_v1_050", 0.25: "mobilenet_v1_025"}


def test_separable_conv_with_bn_and_relu_between():
    torch.manual_seed(0)
    conv = SeparableConv2d(4, 6, 3, stride=2, mid_norm_layer=nn.BatchNorm2d, mid_act_layer=nn.ReLU).eval()
    with torch.no_grad():
        conv.mid_norm.running_mean.uniform_(-1, 1)
        conv.mid_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 9, 9)
    bn = conv.mid_norm
    mid = F.conv2d(x, conv.depthwise.weight, stride=2, padding=1, groups=4)
    mid = F.relu(F.batch_norm(mid, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))
    with torch.no_grad():
        assert torch.allclose(conv(x), F.conv2d(mid, conv.pointwise.weight), atol=1e-6)
    assert isinstance(SeparableConv2d(4, 6).mid_norm, nn.Identity)  # Xception's: nothing between


def test_table_1_layers():
    model = meta_model("mobilenet_v1_100")
    separable = [m for m in model.modules() if isinstance(m, SeparableConv2d)]
    assert len(separable) == 13
    assert [s.pointwise.out_channels for s in separable] == [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    assert [s.depthwise.stride[0] for s in separable] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(isinstance(s.mid_norm, nn.BatchNorm2d) and isinstance(s.mid_act, nn.ReLU) for s in separable)
    # 28 layers counting depthwise and pointwise separately (Section 3.2): stem + 2 x 13 + FC.
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) == 28
    assert [f["num_chs"] for f in model.feature_info] == [64, 128, 256, 512, 1024]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("alpha", sorted(TABLE_6))
def test_table_6_width_multiplier(alpha):
    """Params to the paper's 0.1 M and mult-adds to its 1 M at 224."""
    _, mult_adds, params = TABLE_6[alpha]
    model = meta_model(ALPHAS[alpha])
    assert round(count_params(model) / 1e6, 1) == params
    assert round(count_macs(model) / 1e6) == mult_adds


@pytest.mark.parametrize("size", sorted(TABLE_7))
def test_table_7_resolution(size):
    _, mult_adds, params = TABLE_7[size]
    model = meta_model("mobilenet_v1_100")
    assert round(count_params(model) / 1e6, 1) == params
    # 160 x 160: 290.68 M here; the paper prints 290 (it truncates there, or rounds a count without the FC).
    assert abs(count_macs(model, size) / 1e6 - mult_adds) < 1


def test_table_4_full_convolutions_against_separable():
    """Conv MobileNet: 29.3 M params and 4866 M mult-adds against MobileNet's 4.2 M and 569 M."""
    conv, separable = meta_model("mobilenet_v1_100", separable=False), meta_model("mobilenet_v1_100")
    assert not any(isinstance(m, SeparableConv2d) for m in conv.modules())
    assert sum(isinstance(m, ConvBnAct) for m in conv.modules()) == 14  # the stem and the 13 replaced layers
    for model, (_, mult_adds, params) in ((conv, TABLE_4["conv"]), (separable, TABLE_4["separable"])):
        assert round(count_params(model) / 1e6, 1) == params
        assert abs(count_macs(model) / 1e6 - mult_adds) < 1.5  # 4867.3 M here against 4866
    assert count_macs(conv) / count_macs(separable) > 8  # Section 3.1: 8 to 9 times less computation


def test_list_prints_small_mac_counts_in_m(capsys):
    main(["list", "mobilenet_v1_0*"])
    out = capsys.readouterr().out
    assert "41.0 M" in out and "149.5 M" in out and "0.041" not in out


def test_bad_alpha_is_one_line_error():
    with pytest.raises(ValueError, match="width multiplier alpha must be positive"):
        MobileNetV1(alpha=0)


def test_relu6_variant_is_the_released_layout():
    model = meta_model("mobilenet_v1_100_relu6")
    assert isinstance(model.stem.act, nn.ReLU6) and isinstance(model.stages[4][1].act, nn.ReLU6)
    assert isinstance(meta_model("mobilenet_v1_100").stem.act, nn.ReLU)


def test_timm_mobilenetv1_100_weights_give_same_logits():
    timm = require_peer("timm")
    torch.manual_seed(0)
    assert_same_logits("mobilenet_v1_100_relu6", timm.create_model("mobilenetv1_100"), 64, source="timm")


@pytest.mark.parametrize("alpha, top1", [(1.0, 70.6), (0.75, 68.4), (0.5, 63.7), (0.25, 50.6)])
def test_table_6_accuracy_is_the_registered_error(alpha, top1):
    assert cnnzoo.model_cfg(ALPHAS[alpha]).top1_err == round(100 - top1, 1)
    assert cnnzoo.model_cfg(ALPHAS[alpha]).arxiv == "1704.04861"


def test_direct_construction_defaults_and_full_conv_layers_keep_their_relu():
    from cnnzoo.models.mobilenet import scaled

    assert scaled(32, 0.01) == 1 and scaled(32, 0.5) == 16  # at least one channel
    model = MobileNetV1()  # alpha 1, 1000 classes, 3 channels, no dropout (the paper uses none)
    assert model.stem.conv.in_channels == 3 and model.dropout.p == 0.0
    assert count_params(model) == cnnzoo.model_cfg("mobilenet_v1_100").params
    full = MobileNetV1(separable=False)
    units = [m for m in full.modules() if isinstance(m, ConvBnAct)]
    assert len(units) == 14 and all(isinstance(m.act, nn.ReLU) for m in units)  # Table 4's Conv MobileNet
    relu6 = MobileNetV1(separable=False, act_layer=nn.ReLU6)
    assert all(isinstance(m.act, nn.ReLU6) for m in relu6.modules() if isinstance(m, ConvBnAct))
