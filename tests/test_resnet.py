import pytest
import torch

import cnnzoo
from cnnzoo.analysis import count_params
from cnnzoo.analysis.complexity import module_macs
from cnnzoo.models.resnet import BasicBlock, Bottleneck, ResNet
from conftest import require_peer
from peer_models import randomize_batchnorm


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_torchvision_weights_give_same_logits(name):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = randomize_batchnorm(getattr(torchvision.models, name)(), calibrate=torch.randn(4, 3, 64, 64)).eval()
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
    blocks = [b for b in model.modules() if isinstance(b, (BasicBlock, Bottleneck))]
    last, inner = ("bn2", "bn1") if name == "resnet20" else ("bn3", "bn2")  # the last BN of each branch, only
    assert all(not getattr(b, last).weight.any() and getattr(b, inner).weight.all() for b in blocks)


def test_resnet1202_untrained_is_finite_in_eval_mode():
    # 600 blocks at He init double the variance each in eval mode (fresh BN statistics): float32 overflows
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(cnnzoo.create_model("resnet1202").eval()(x)).all()
        assert not torch.isfinite(cnnzoo.create_model("resnet1202", zero_init_last=False).eval()(x)).all()


def test_direct_construction_defaults_are_the_papers_imagenet_layout():
    """``ResNet(block, layers)`` alone: ImageNet stem, option-B (projection) shortcuts, 1000 classes, RGB."""
    with torch.device("meta"):
        model = ResNet(BasicBlock, (2, 2, 2, 2))
        basic, bottleneck = BasicBlock(64, 64), Bottleneck(256, 64, stride=2)
    assert count_params(model) == 11_689_512  # ResNet-18's
    assert model.conv1.kernel_size == (7, 7) and model.conv1.in_channels == 3 and model.fc.out_features == 1000
    assert isinstance(model.layer2[0].downsample, torch.nn.Sequential)  # a 1x1 projection, not zero padding
    assert basic.conv1.stride == (1, 1)
    # the released layout strides the 3x3 (v1.5); plain 64-wide groups of one
    assert bottleneck.conv1.stride == (1, 1) and bottleneck.conv2.stride == (2, 2)
    assert (bottleneck.conv2.groups, bottleneck.conv2.in_channels) == (1, 64)
    x = torch.randn(1, 256, 8, 8)
    assert Bottleneck(256, 64).eval()(x).shape == x.shape  # no gate given: the block always runs


@pytest.mark.parametrize("kwargs", [dict(groups=2), dict(base_width=32)])
def test_basic_block_refuses_groups_and_widths(kwargs):
    with pytest.raises(ValueError, match=r"BasicBlock has no groups \(got groups=\d+, base_width=\d+\); grouped "
                                         r"\(ResNeXt\) blocks are bottlenecks: use Bottleneck"):
        BasicBlock(64, 64, **kwargs)


def test_bottleneck_networks_keep_their_stochastic_depth_gates():
    with torch.device("meta"):
        model = cnnzoo.create_model("resnet50", drop_path_rate=0.5)
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert [b.drop_path.survival_prob for b in blocks] == pytest.approx([1 - l / 16 * 0.5 for l in range(1, 17)])


def test_unknown_stem_or_shortcut_is_named():
    message = r"unknown ResNet stem 'CIFAR': use 'imagenet' \(7x7/2 conv, max-pool\) or 'cifar' \(3x3 conv\)"
    with pytest.raises(ValueError, match=message):
        ResNet(BasicBlock, (1, 1, 1), stem="CIFAR")
    message = r"unknown shortcut 'C': use 'A' \(identity, zero-padded\) or 'B' \(1x1 projection\)"
    with pytest.raises(ValueError, match=message):
        ResNet(BasicBlock, (1, 1, 1), shortcut="C")
