import math

import pytest
import torch
import torch.nn.functional as F

from cnnzoo.analysis import count_params
from cnnzoo.analysis.complexity import meta_model
from cnnzoo.cli import main
from cnnzoo.layers import DropPathSpec, StochasticDepth
import cnnzoo
from cnnzoo.models.pyramidnet import (IMAGENET_RESULTS, PyramidBasicBlock, _cifar_pyramidnet, _imagenet_entry,
                                      _imagenet_pyramidnet)
from conftest import feature_shapes


def test_widths_grow_by_alpha_over_n_per_block():
    model = meta_model("pyramidnet110_a48")
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 54 and [len(s) for s in model.stages] == [18, 18, 18]
    expected = [math.floor(16 + 48 * k / 54) for k in range(1, 55)]
    assert model.widths == expected
    assert [b.conv2.out_channels for b in blocks] == expected
    assert [b.conv1.in_channels for b in blocks] == [16] + expected[:-1]
    assert expected[0] == 16 and expected[17] == 32 and expected[-1] == 64 == model.num_features
    assert [b.stride for b in blocks].count(2) == 2 and blocks[18].stride == blocks[36].stride == 2
    assert [f["num_chs"] for f in model.feature_info] == [32, 48, 64]
    assert model.feature_info[-1]["module"] == "final_act"  # the features end after the last BN-ReLU


def test_imagenet_stem_is_7x7_stride_2_then_max_pool_to_56():
    shapes, info = feature_shapes("pyramidnet101_a250", 224)
    assert [s[1:] for s in shapes] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    conv, pool = meta_model("pyramidnet101_a250").stem[::3]
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)


def test_imagenet_entries_carry_the_papers_single_crop_errors():
    assert _imagenet_entry(101, 250) == dict(paper="Deep Pyramidal Residual Networks", arxiv="1610.02915",
                                             top1_err=23.24, top5_err=6.59,
                                             eval_note="single crop 224, the authors' release")
    cfg = cnnzoo.model_cfg("pyramidnet200_a300")
    assert (cfg.top1_err, cfg.top5_err, cfg.params) == (20.41, 5.16, 62_152_030)


def test_paper_parameter_counts_table_4():
    """Table 4 to its 0.1 M, for the networks the floor of Eq. 2 reproduces."""
    assert round(count_params(meta_model("pyramidnet110_a48")) / 1e6, 1) == 1.7
    for depth, alpha, params in ((164, 48, 1.7), (200, 240, 26.6), (236, 220, 26.8), (272, 200, 26.0)):
        with torch.device("meta"):
            model = _cifar_pyramidnet(depth, alpha, bottleneck=True)
        assert round(count_params(model) / 1e6, 1) == params, (depth, alpha)


@pytest.mark.parametrize("depth, alpha", sorted(IMAGENET_RESULTS))
def test_imagenet_output_feature_dimension(depth, alpha):
    with torch.device("meta"):
        model = _imagenet_pyramidnet(depth, alpha, num_classes=1000)
    assert model.num_features == IMAGENET_RESULTS[depth, alpha][1] == 4 * (64 + alpha)
    assert model.feature_info[-1]["reduction"] == 32


def test_unit_is_bn_conv_bn_relu_conv_bn_plus_padded_pooled_identity():
    torch.manual_seed(0)
    block = PyramidBasicBlock(4, 6, stride=2).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        shortcut = F.pad(F.avg_pool2d(x, 2, 2), (0, 0, 0, 0, 0, 2))
        out = block(x)
        assert torch.allclose(out, shortcut + block.residual(x), atol=1e-6)
        assert (out < 0).any()  # no ReLU after the addition (Fig. 6d)
        block.bn1.running_mean.fill_(100.0)  # the branch starts with BN, not ReLU: it sees the raw input
        assert not torch.allclose(block(x), out)
        # An odd map: the shortcut's pooling rounds up, as the strided 3x3 convolution does.
        assert block(torch.randn(1, 4, 7, 7)).shape == (1, 6, 4, 4)


def test_stochastic_depth_drops_whole_branches():
    model = _cifar_pyramidnet(20, 12, drop_path=DropPathSpec(0.5))
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert [round(g.survival_prob, 4) for g in gates] == [round(1 - l / 9 * 0.5, 4) for l in range(1, 10)]
    assert all(g.stream is model.gate_stream for g in gates)  # the model's one stream: seed_gates(model) reaches them
    block = model.stages[0][0].train()
    block.drop_path.survival_prob = 0.0  # never open
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(block(x), F.pad(x, (0, 0, 0, 0, 0, block.out_chs - 16)))


def test_bad_depth_is_one_line_error():
    with pytest.raises(ValueError, match="a CIFAR PyramidNet with basic blocks has 6n \\+ 2 layers; 111 is not"):
        _cifar_pyramidnet(111, 48)
    with pytest.raises(ValueError, match="with bottleneck blocks has 9n \\+ 2 layers; 111 is not"):
        _cifar_pyramidnet(111, 48, bottleneck=True)


def test_info_shows_the_papers_1_7_m(capsys):
    main(["info", "pyramidnet110_a48"])
    out = capsys.readouterr().out
    assert any("1.7 M" in line and "paper 1.7 M" in line and "✓ match" in line for line in out.splitlines())
    assert "4.58%" in out


def test_direct_construction_defaults_are_the_cifar_network():
    """``PyramidNet(layers, alpha)`` alone: basic blocks, the CIFAR stem, 10 classes, RGB, no dropout;
    the blocks alone keep their stride 1 and always run."""
    from cnnzoo.models.pyramidnet import PyramidBottleneck, PyramidNet

    with torch.device("meta"):
        model = PyramidNet((18, 18, 18), 48)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in meta_model("pyramidnet110_a48").state_dict().items()}
    assert model.fc.out_features == 10 and model.stem[0].in_channels == 3 and model.dropout.p == 0.0
    basic, bottleneck = PyramidBasicBlock(16, 20), PyramidBottleneck(16, 20)
    assert basic.stride == bottleneck.stride == 1
    x = torch.randn(2, 16, 8, 8)
    assert basic.eval()(x).shape == (2, 20, 8, 8) and bottleneck.eval()(x).shape == (2, 80, 8, 8)
    with pytest.raises(ValueError, match="unknown PyramidNet stem 'svhn': use 'cifar' or 'imagenet'"):
        PyramidNet((1, 1, 1), 48, stem="svhn")
