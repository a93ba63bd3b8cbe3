import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo
from cnnzoo.analysis import count_params
from cnnzoo.cli import main
from cnnzoo.layers import SeparableConv2d, StochasticDepth
from cnnzoo.models.xception import XceptionModule
from conftest import assert_built_as_registered, require_peer
from peer_models import randomize_batchnorm


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


@pytest.mark.parametrize("mid_act_layer, mid", [(None, lambda t: t), (nn.ReLU, F.relu), (nn.ELU, F.elu)])
def test_separable_conv_is_depthwise_then_pointwise(mid_act_layer, mid):
    torch.manual_seed(0)
    conv = SeparableConv2d(4, 6, 3, stride=2, mid_act_layer=mid_act_layer)
    x = torch.randn(2, 4, 9, 9)
    depthwise = F.conv2d(x, conv.depthwise.weight, stride=2, padding=1, groups=4)  # one 3x3 filter per channel
    assert conv.depthwise.weight.shape == (4, 1, 3, 3) and conv.pointwise.weight.shape == (6, 4, 1, 1)
    assert torch.allclose(conv(x), F.conv2d(mid(depthwise), conv.pointwise.weight), atol=1e-6)


@pytest.mark.parametrize("padding, dilation, side", [(None, 1, 9), (None, 2, 9), (0, 1, 7), (3, 2, 11)])
def test_separable_conv_pads_to_keep_the_size_unless_told(padding, dilation, side):
    """Default padding dilation * (k - 1) / 2 keeps 9 x 9; an explicit one is used as given."""
    conv = SeparableConv2d(4, 6, padding=padding, dilation=dilation)  # 3x3 unless told
    assert conv.depthwise.kernel_size == (3, 3)
    assert conv(torch.randn(1, 4, 9, 9)).shape[-2:] == (side, side)


def test_36_conv_layers_in_14_modules_linear_between_depthwise_and_pointwise():
    model = meta_model("xception")
    modules = [m for m in model.modules() if isinstance(m, XceptionModule)]
    assert len(modules) == 12  # plus the two-conv stem and the two final separable convs: 14
    assert len(model.middle_flow) == 8 and all(m.shortcut is None for m in model.middle_flow)
    separable = [m for m in model.modules() if isinstance(m, SeparableConv2d)]
    not_plain = {id(m.shortcut[0]) for m in modules if m.shortcut is not None}  # 1x1 projections
    not_plain |= {id(c) for s in separable for c in (s.depthwise, s.pointwise)}
    plain = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in not_plain]
    assert len(plain) + len(separable) == 2 + 34 == 36  # a separable convolution is one of the 36 layers
    assert all(isinstance(s.mid_act, nn.Identity) for s in separable)
    assert all(isinstance(s.mid_act, nn.ELU) for s in meta_model("xception_mid_elu").modules()
               if isinstance(s, SeparableConv2d))


def test_noresidual_drops_exactly_the_shortcuts():
    model, plain = meta_model("xception"), meta_model("xception_noresidual")
    projections = sum(c_out * (c_in + 2) for c_in, c_out in ((64, 128), (128, 256), (256, 728), (728, 1024)))
    assert count_params(model) - count_params(plain) == projections == 977_072
    module = cnnzoo.create_model("xception_noresidual").middle_flow[0].eval()
    x = torch.randn(1, 728, 5, 5)
    with torch.no_grad():
        assert torch.equal(module(x), module.branch(x))
    with pytest.raises(ValueError, match="drop_path_rate=0.5 needs residual connections; use residual=True"):
        cnnzoo.create_model("xception_noresidual", drop_path_rate=0.5)


def test_timm_legacy_xception_weights_give_same_logits():
    timm = require_peer("timm")
    torch.manual_seed(0)
    peer = randomize_batchnorm(timm.create_model("legacy_xception"), calibrate=torch.randn(4, 3, 64, 64)).eval()
    ours = meta_model("xception").to_empty(device="cpu")  # every tensor comes from the peer
    cnnzoo.import_weights(ours, peer.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        theirs = peer(x)
        assert (ours(x) - theirs).abs().max() <= 1e-4 and theirs.abs().max() > 0.1


def test_middle_flow_stochastic_depth_settings():
    model = meta_model("xception", drop_path_rate=0.5, drop_path_mode="row", drop_path_inverted=True)
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert gates == [m.drop_path for m in model.middle_flow]  # the eight identity-shortcut modules only
    assert [g.survival_prob for g in gates] == pytest.approx([1 - l / 8 * 0.5 for l in range(1, 9)])
    assert all(g.mode == "row" and g.inverted for g in gates)
    assert all(g.stream is model.gate_stream for g in gates)  # the model's one stream: seed_gates(model) reaches them
    uniform = meta_model("xception", drop_path_rate=0.2, drop_path_schedule="uniform")
    assert all(m.drop_path.survival_prob == pytest.approx(0.8) for m in uniform.middle_flow)


def test_dropped_middle_module_is_skipped_in_batch_mode():
    torch.manual_seed(0)
    model = cnnzoo.create_model("xception", num_classes=5, drop_rate=0.0, drop_path_rate=0.5).train()
    for i, module in enumerate(model.middle_flow):
        module.drop_path.survival_prob = 0.0 if i == 3 else 1.0  # gate of module 3 always closed, others open
    calls = [0] * 8
    for i, module in enumerate(model.middle_flow):
        module.branch.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    without = copy.deepcopy(model)
    without.middle_flow[3] = nn.Identity()
    x = torch.randn(2, 3, 32, 32)

    out = model(x)
    assert calls == [1, 1, 1, 0, 1, 1, 1, 1]
    assert torch.allclose(out, without(x), atol=1e-5)
    out.sum().backward()
    assert all(p.grad is None for p in model.middle_flow[3].parameters())
    assert all(p.grad is not None for p in model.middle_flow[4].parameters())


def test_eval_scales_the_middle_branches_by_survival_prob():
    torch.manual_seed(0)
    model = cnnzoo.create_model("xception", drop_path_rate=0.5).eval()
    module = model.middle_flow[7]  # p_8 = 0.5
    x = torch.randn(1, 728, 4, 4)
    with torch.no_grad():
        assert torch.allclose(module(x), x + 0.5 * module.branch(x), atol=1e-6)


def test_cli_reports_expected_middle_flow_depth(capsys):
    assert main(["info", "xception", "--drop-path-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "22,855,952" in out and "8.36 G" in out and "✗" not in out
    assert "8 blocks, expected active E[L~] = 5.75" in out


def test_xception_built_directly_is_xception():
    from cnnzoo.models.xception import Xception

    assert_built_as_registered(Xception, "xception", dropout=0.5)


def test_module_defaults_are_a_middle_flow_module():
    """``XceptionModule(c, widths)`` alone: stride 1, ReLU first (not in place: the shortcut reads the input),
    an identity shortcut, BN with PyTorch's epsilon (timm's weights were evaluated with it)."""
    module = XceptionModule(728, (728, 728, 728))
    first = module.branch[0]
    assert isinstance(first, nn.ReLU) and not first.inplace
    assert all(m.inplace for m in module.branch[1:] if isinstance(m, nn.ReLU))
    assert not any(isinstance(m, nn.MaxPool2d) for m in module.branch)
    assert module.residual and module.shortcut is None and module.drop_path is None
    assert all(m.eps == 1e-5 for m in module.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.randn(1, 728, 5, 5)
    with torch.no_grad():
        assert torch.equal(module.eval()(x), x + module.branch(x))


@pytest.mark.parametrize("widths, stride", [((128, 128), 1), ((64, 64), 2)])
def test_a_module_that_changes_width_or_size_projects_its_shortcut(widths, stride):
    module = XceptionModule(64, widths, stride=stride).eval()
    assert isinstance(module.shortcut[0], nn.Conv2d) and module.shortcut[0].stride == (stride, stride)
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        assert torch.equal(module(x), module.shortcut(x) + module.branch(x))
