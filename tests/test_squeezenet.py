import pytest
import torch
import torch.nn.functional as F
from peer_models import assert_same_logits

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.analysis.complexity import meta_model, trace
from cnnzoo.models.squeezenet import LAYOUTS, Fire, FireRow
from conftest import require_peer


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def test_fire_module_is_squeeze_then_two_expands():
    fire = Fire(128, 32, 128, 128)
    assert count_params(fire) == conv_params(128, 32, 1) + conv_params(32, 128, 1) + conv_params(32, 128, 3)
    torch.manual_seed(0)
    x = torch.randn(1, 128, 9, 9)
    s = F.relu(F.conv2d(x, fire.squeeze.weight, fire.squeeze.bias))
    expected = torch.cat([F.relu(F.conv2d(s, fire.expand1x1.weight, fire.expand1x1.bias)),
                          F.relu(F.conv2d(s, fire.expand3x3.weight, fire.expand3x3.bias, padding=1))], 1)
    assert torch.allclose(fire(x), expected, atol=1e-6)


def test_table_1_squeeze_ratio_and_widths():
    for version in LAYOUTS:
        rows = [r for r in LAYOUTS[version][1] if isinstance(r, FireRow)]
        assert [r.name for r in rows] == [f"fire{i}" for i in range(2, 10)]
        assert all(r.e1x1 == r.e3x3 and r.s1x1 * 8 == r.e1x1 + r.e3x3 for r in rows)  # SR = 0.125, half 3x3
        assert [r.e1x1 + r.e3x3 for r in rows] == [128, 128, 256, 256, 384, 384, 512, 512]
    model = meta_model("squeezenet1_0")
    assert model.features.conv1.kernel_size == (7, 7) and model.features.conv1.out_channels == 96
    assert not any(isinstance(m, torch.nn.Linear) and m is not model.conv10 for m in model.modules())


@pytest.mark.parametrize("name, expected", [
    ("squeezenet1_0", [(96, 109, 109), (256, 54, 54), (512, 27, 27), (512, 13, 13)]),
    ("squeezenet1_1", [(64, 111, 111), (128, 55, 55), (256, 27, 27), (512, 13, 13)]),
])
def test_feature_info_and_late_downsampling(name, expected):
    model = meta_model(name)
    names = [info["module"] for info in model.feature_info]
    shapes = {call.name: call.output_shape[1:] for call in trace(model, 224).calls if call.name in names}
    assert [shapes[n] for n in names] == expected
    assert [(i["num_chs"], i["reduction"]) for i in model.feature_info] == [
        (c, r) for (c, _, _), r in zip(expected, (2, 4, 8, 16))]


def test_50x_fewer_parameters_than_alexnet_and_v1_1_cheaper():
    # The title's 50x: the paper's AlexNet (240 MB) against SqueezeNet (4.8 MB), 32-bit weights.
    ratio = count_params(meta_model("alexnet")) / count_params(meta_model("squeezenet1_0"))
    assert round(ratio) == 49
    # v1.1 keeps the parameters and cuts the computation (the release says 2.4x; conv MACs at 224: 2.3x).
    assert count_params(meta_model("squeezenet1_1")) < count_params(meta_model("squeezenet1_0"))
    assert round(count_macs(meta_model("squeezenet1_0")) / count_macs(meta_model("squeezenet1_1")), 1) == 2.3


def test_conv10_is_a_1x1_convolution_and_the_head_resizes():
    torch.manual_seed(0)
    model = cnnzoo.create_model("squeezenet1_1", num_classes=6).eval()
    feats = torch.randn(1, 512, 5, 5)
    kernel = model.conv10.weight[:, :, None, None]
    expected = F.relu(F.conv2d(feats, kernel, model.conv10.bias)).mean((2, 3))
    assert torch.allclose(model.forward_head(feats), expected, atol=1e-6)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 512)


def test_unknown_version_is_an_error():
    with pytest.raises(ValueError, match="unknown SqueezeNet version '1_2': use '1_0' or '1_1'"):
        cnnzoo.models.squeezenet.SqueezeNet("1_2")


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_torchvision_weights_give_same_logits(name):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    assert_same_logits(name, getattr(torchvision.models, name)(), 32, batch=1)


def test_release_init_is_xavier_then_gaussian_conv10_and_direct_defaults_are_v1_0():
    """The release's fillers: Xavier (variance 1 / fan_in) for every conv, N(0, 0.01) for conv10, zero biases."""
    from cnnzoo.models.squeezenet import SqueezeNet

    torch.manual_seed(0)
    model = SqueezeNet()  # version 1.0, 1000 classes, 3 channels unless told
    conv1 = model.features.conv1
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (3, 96, (7, 7))
    assert model.conv10.weight.shape[0] == 1000
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m is not model.conv10:
            assert abs(m.weight.var().item() * m.weight[0].numel() - 1) < 0.25, name
            assert not m.bias.any(), name
    assert abs(model.conv10.weight.std().item() - 0.01) < 1e-3 and not model.conv10.bias.any()
