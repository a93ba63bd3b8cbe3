import pytest
import torch

import cnnzoo
from cnnzoo.analysis.complexity import module_macs
from conftest import require_peer


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_torchvision_weights_give_same_logits(name):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = getattr(torchvision.models, name)().eval()
    with torch.no_grad():  # non-trivial BN statistics, so a mis-mapped buffer shows
        for m in peer.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = cnnzoo.import_weights(cnnzoo.create_model(name), peer.state_dict(), source="torchvision").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max() <= 1e-4


def test_import_rejects_missing_and_unexpected_keys():
    torchvision = require_peer("torchvision")
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = state.pop("fc.weight")
    with pytest.raises(ValueError, match=r"missing keys \(1\): fc.weight; unexpected keys \(1\): extra.weight"):
        cnnzoo.import_weights(cnnzoo.create_model("resnet18"), state, source="torchvision")


def test_import_rejects_wrong_shapes():
    torchvision = require_peer("torchvision")
    state = torchvision.models.resnet18(num_classes=10).state_dict()
    with pytest.raises(ValueError, match=r"fc.weight: file \(10, 512\) vs model \(1000, 512\)"):
        cnnzoo.import_weights(cnnzoo.create_model("resnet18"), state, source="torchvision")


def test_stride_in_1x1_saves_the_strided_1x1s_work():
    """The paper's layout computes the strided stage entries' 1x1 at the output resolution."""
    with torch.device("meta"):
        released = module_macs(cnnzoo.create_model("resnet50"))
        paper = module_macs(cnnzoo.create_model("resnet50", stride_in_1x1=True))
    for stage, in_ch, planes, out_side in (("layer2", 256, 128, 28), ("layer3", 512, 256, 14), ("layer4", 1024, 512, 7)):
        # torchvision: 1x1 at the input side (2 * out_side); paper: at the output side.
        saved = in_ch * planes * ((2 * out_side) ** 2 - out_side**2)
        assert released[stage] - paper[stage] == saved
    assert paper[""] == 3_857_973_248


@pytest.mark.parametrize("depth, paper_top1, paper_top5", [(50, 22.85, 6.71), (101, 21.75, 6.05), (152, 21.43, 5.71)])
def test_reference_errors_are_those_measured_on_the_registered_layout(depth, paper_top1, paper_top5):
    """The paper's 10-crop errors (Table 3) go with its layout (stride in the 1x1); the released layout
    (stride in the 3x3) carries torchvision's single-crop figures for the weights it publishes for it."""
    torchvision = require_peer("torchvision")
    paper, released = (cnnzoo.model_cfg(f"resnet{depth}{tail}") for tail in ("_paper", ""))
    assert (paper.top1_err, paper.top5_err) == (paper_top1, paper_top5) and paper.eval_note == "10-crop, ImageNet val"
    with torch.device("meta"):
        entry = cnnzoo.create_model(f"resnet{depth}_paper").layer2[0]
    assert (entry.conv1.stride, entry.conv2.stride) == ((2, 2), (1, 1))

    weights = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
    acc = weights.meta["_metrics"]["ImageNet-1K"]
    assert (released.top1_err, released.top5_err) == (round(100 - acc["acc@1"], 3), round(100 - acc["acc@5"], 3))
    preset = weights.transforms()
    assert (preset.resize_size, preset.crop_size) == ([256], [224])
    assert released.eval_note.startswith("single crop 224 (resize 256)") and "IMAGENET1K_V1" in released.eval_note


def test_paper_layout_macs_are_table_1s_flops():
    """Table 1: 3.8, 7.6 and 11.3 x 10^9 FLOPs (multiply-adds) for ResNet-50/101/152 in the paper's layout."""
    counted = {}
    for depth in (50, 101, 152):
        with torch.device("meta"):
            counted[depth] = module_macs(cnnzoo.create_model(f"resnet{depth}_paper"))[""]
    assert counted == {50: 3_857_973_248, 101: 7_570_194_432, 152: 11_282_415_616}
    assert [round(macs / 1e9, 1) for macs in counted.values()] == [3.9, 7.6, 11.3]  # the paper prints 3.8 for 50


def test_cifar_option_a_shortcut_is_parameter_free_and_pads_zeros():
    model = cnnzoo.create_model("resnet20")
    shortcut = model.layer2[0].downsample
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    x = torch.randn(1, 16, 32, 32)
    y = shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_cifar_depth_is_6n_plus_2():
    model = cnnzoo.create_model("resnet110")
    weight_layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weight_layers) == 110


@pytest.mark.parametrize("name", ["resnet20", "resnet50"])
def test_zero_init_last_starts_every_block_as_its_shortcut(name):
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, zero_init_last=True).eval()
    size = 32 if name == "resnet20" else 64
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        x = stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for block in model.layer1:
            shortcut = x if block.downsample is None else block.downsample(x)
            y = block(x)
            assert torch.equal(y, torch.relu(shortcut))
            x = y
        plain = cnnzoo.create_model(name).eval()
        assert plain.layer1[0].residual(stem).abs().max() > 0.1  # the paper's He init: the branch does something


def test_resnet1202_untrained_is_finite_in_eval_mode():
    # 600 blocks at He init double the variance each in eval mode (fresh BN statistics): float32 overflows
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(cnnzoo.create_model("resnet1202").eval()(x)).all()
        assert not torch.isfinite(cnnzoo.create_model("resnet1202", zero_init_last=False).eval()(x)).all()
