import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.analysis.complexity import meta_model
from cnnzoo.layers import StochasticDepth
from cnnzoo.models.efficientnet import MBConv
from conftest import assert_built_as_registered, require_peer
from peer_models import assert_same_logits


def test_table_1_b0():
    model = meta_model("efficientnet_b0")
    blocks = [b for stage in model.stages for b in stage]
    assert [len(s) for s in model.stages] == [1, 2, 2, 3, 3, 4, 1]
    assert [b.conv_dw.conv.kernel_size[0] for b in blocks] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [b.conv_dw.conv.stride[0] for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.conv_pwl.conv.out_channels for b in blocks] == [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112,
                                                               192, 192, 192, 192, 320]
    assert isinstance(blocks[0].conv_pw, nn.Identity)  # MBConv1: no expansion
    assert all(b.conv_dw.conv.in_channels == 6 * b.conv_pw.conv.in_channels for b in blocks[1:])  # MBConv6
    assert all(isinstance(m.act, nn.SiLU) for m in (model.stem, model.head, blocks[3].conv_dw))
    assert isinstance(blocks[3].conv_pwl.act, nn.Identity)  # linear projection
    # SE squeezes to a quarter of the block's input: 32 -> 8 in the first block, 16 -> 4 in the second.
    assert [b.se.fc1.out_channels for b in blocks[:2]] == [8, 4]
    assert [b.has_residual for b in blocks].count(True) == 9
    assert model.stem.conv.out_channels == 32 and model.num_features == 1280
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(16, 2), (24, 4), (40, 8), (112, 16),
                                                                            (1280, 32)]


def test_drop_connect_is_row_mode_stochastic_depth_growing_with_the_block_index():
    model = meta_model("efficientnet_b0", drop_path_rate=0.2)
    blocks = [b for stage in model.stages for b in stage]
    probs = [b.drop_path.survival_prob for b in blocks if b.has_residual]
    expected = [1 - 0.2 * i / 16 for i, b in enumerate(blocks) if b.has_residual]
    assert probs == pytest.approx(expected)
    assert all(b.drop_path.mode == "row" and b.drop_path.inverted for b in blocks if b.has_residual)
    assert all(b.drop_path.stream is model.gate_stream for b in blocks if b.has_residual)  # seed_gates reaches them
    assert all(b.drop_path is None for b in blocks if not b.has_residual)
    assert model.dropout.p == 0.2
    none = meta_model("efficientnet_b0")  # off unless asked for, as every family (the recipe asks for 0.2)
    assert all(m.survival_prob == 1.0 for m in none.modules() if isinstance(m, StochasticDepth))


def test_drop_connect_masks_samples_in_training_only():
    torch.manual_seed(0)
    block = MBConv(8, 8, 6, 3, 1, StochasticDepth(0.5, mode="row", inverted=True))
    x = torch.randn(1, 8, 6, 6).expand(16, -1, -1, -1).contiguous()  # 16 copies of one sample
    with torch.no_grad():
        block.train()
        out = block(x)
        kept = [not torch.equal(o, x[0]) for o in out]
        assert 0 < sum(kept) < 16  # some samples keep the branch (scaled by 1/0.5), others get x
        block.eval()
        assert torch.allclose(block(x), x + block.branch(x))  # inverted: no scaling at evaluation


def test_torchvision_efficientnet_b0_weights_give_same_logits():
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    assert_same_logits("efficientnet_b0", torchvision.models.efficientnet_b0(), 64)


def test_efficientnet_built_directly_is_efficientnet_b0():
    from cnnzoo.models.efficientnet import EfficientNet

    assert_built_as_registered(EfficientNet, "efficientnet_b0", dropout=0.2)


def test_reference_init_and_bn_momentum():
    """The reference code: conv weights normal with std sqrt(2 / fan_out), the classifier uniform in
    +-1/sqrt(classes) with zero bias; BN momentum 0.99 in TF's convention (0.01 in PyTorch's), eps 1e-5."""
    torch.manual_seed(0)
    model = cnnzoo.create_model("efficientnet_b0", num_classes=100)
    bound = 100 ** -0.5
    assert -bound <= model.fc.weight.min() < -0.99 * bound and 0.99 * bound < model.fc.weight.max() <= bound
    assert not model.fc.bias.any()
    conv = model.head.conv  # 320 -> 1280, 1x1: fan_out 1280
    assert conv.weight.std().item() == pytest.approx((2 / 1280) ** 0.5, rel=0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.01 and m.eps == 1e-5 for m in norms)


def test_a_block_alone_is_never_dropped_and_adds_its_input():
    block = MBConv(16, 16, 6, 3, 1).eval()
    assert block.drop_path.survival_prob == 1.0 and block.drop_path.mode == "row" and block.drop_path.inverted
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x + block.branch(x))
    assert MBConv(16, 24, 6, 3, 1).drop_path is None  # no residual, nothing to drop
    assert MBConv(2, 2, 6, 3, 1).se.fc1.out_channels == 1  # SE squeezes to a quarter of the input, at least one
