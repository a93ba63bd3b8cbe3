import pytest
import torch
from peer_models import assert_same_logits

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.analysis.complexity import meta_model
from cnnzoo.models.resnet import BasicBlock, ResNet
from cnnzoo.models.resnext import TABLE_2, ResNeXt, resnext50
from conftest import require_peer


def test_table_1_template_grouped_3x3_and_stage_widths():
    """ResNeXt-50 (32x4d), Table 1: conv2-5 blocks [1x1 128, 3x3 128 C=32, 1x1 256] ... [1024, 1024, 2048]."""
    model = meta_model("resnext50_32x4d")
    for i, (width, out) in enumerate([(128, 256), (256, 512), (512, 1024), (1024, 2048)], start=1):
        for block in getattr(model, f"layer{i}"):
            assert block.conv1.out_channels == block.conv2.in_channels == block.conv2.out_channels == width
            assert block.conv2.groups == 32 and block.conv2.weight.shape[1] == width // 32  # d = 4, 8, 16, 32
            assert block.conv3.out_channels == out
    # Stride 2 in the 3x3 of each stage's first block (Section 4), not in the 1x1.
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)
    assert [(i["num_chs"], i["reduction"]) for i in model.feature_info] == [
        (64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]
    assert meta_model("resnext101_32x8d").layer1[0].conv2.weight.shape[:2] == (256, 8)


def test_table_2_trades_cardinality_for_width_at_resnet50_cost():
    resnet50 = meta_model("resnet50")
    params, macs = count_params(resnet50), count_macs(resnet50)
    for cardinality, width in TABLE_2.items():
        with torch.device("meta"):
            model = resnext50(cardinality, width)
        if cardinality == 1:  # 1x64d is ResNet-50 itself
            assert (count_params(model), count_macs(model, 224)) == (params, macs)
        assert abs(count_params(model) / params - 1) < 0.025
        assert abs(count_macs(model, 224) / macs - 1) < 0.05


def test_macs_do_not_round_to_the_papers_figure():
    """Why resnext50_32x4d claims no MACs: 4.230 G counted, which is not the reference's 4.1 G."""
    macs = count_macs(meta_model("resnext50_32x4d"))
    assert macs == 4_230_479_872 and round(macs / 1e9, 1) != 4.1
    assert cnnzoo.model_cfg("resnext50_32x4d").macs is None


def test_resnext50_defaults_to_32x4d_and_passes_resnet_keywords():
    with torch.device("meta"):
        model = resnext50(num_classes=10, in_chans=1)
        assert count_params(resnext50()) == count_params(meta_model("resnext50_32x4d"))
    assert (model.cardinality, model.bottleneck_width) == (32, 4)
    assert model.fc.out_features == 10 and model.conv1.in_channels == 1


def test_bad_depth_or_grouped_basic_block_are_errors():
    with pytest.raises(ValueError, match="depth must be 50, 101 or 152, got 34"):
        ResNeXt(34, 32, 4)
    with pytest.raises(ValueError, match="BasicBlock has no groups"):
        ResNet(BasicBlock, (2, 2, 2, 2), groups=32, base_width=4)


@pytest.mark.parametrize("name, kwargs", [
    ("resnext50_32x4d", {}),
    ("resnext101_32x4d", dict(groups=32, width_per_group=4)),  # not a torchvision entry point: its class
    ("resnext101_32x8d", {}),
])
def test_torchvision_weights_give_same_logits(name, kwargs):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    if kwargs:
        from torchvision.models.resnet import Bottleneck

        peer = torchvision.models.ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)
    else:
        peer = getattr(torchvision.models, name)()
    assert_same_logits(name, peer, 32, batch=1)
