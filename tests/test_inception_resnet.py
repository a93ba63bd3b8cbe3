import pytest
import torch

import cnnzoo
from cnnzoo.analysis import count_params
from cnnzoo.layers import GateStream, StochasticDepth, seed_gates
from cnnzoo.models.inception_resnet import Block8, Block17, Block35, InceptionResNetV2
from conftest import assert_built_as_registered, require_peer
from peer_models import randomize_batchnorm


def test_timm_weights_give_same_logits():
    timm = require_peer("timm")
    torch.manual_seed(0)
    peer = randomize_batchnorm(timm.create_model("inception_resnet_v2"), calibrate=torch.randn(2, 3, 75, 75)).eval()
    ours = cnnzoo.import_weights(cnnzoo.create_model("inception_resnet_v2"), peer.state_dict(), source="timm").eval()
    x = torch.randn(1, 3, 75, 75)  # the smallest input both accept
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max() <= 1e-4


def test_released_layout():
    model = cnnzoo.create_model("inception_resnet_v2")
    blocks = [m for m in model.modules() if isinstance(m, (Block35, Block17, Block8))]
    assert [type(b).__name__ for b in blocks] == ["Block35"] * 10 + ["Block17"] * 20 + ["Block8"] * 10
    assert [b.scale for b in blocks] == [0.17] * 10 + [0.10] * 20 + [0.20] * 9 + [1.0]
    assert all(isinstance(b.act, torch.nn.ReLU) for b in blocks[:-1])
    assert isinstance(blocks[-1].act, torch.nn.Identity)
    bn = model.conv2d_1a.bn
    assert bn.eps == 1e-3


def test_depths_and_scales_are_arguments():
    with torch.device("meta"):
        paper = cnnzoo.create_model("inception_resnet_v2_paper")
        small = InceptionResNetV2((3, 6, 3), scales=(0.3, 0.3, 0.3))
    assert (len(paper.repeat), len(paper.repeat_1), len(paper.repeat_2) + 1) == (5, 10, 5)
    # Our count for the paper's schema (its stem, 5-10-5, widths 384 / 1152 / 2144); the paper prints none.
    assert count_params(paper) == 35_122_184
    assert (len(small.repeat), len(small.repeat_1), len(small.repeat_2) + 1) == (3, 6, 3)
    assert {b.scale for b in small.repeat} == {0.3}
    with pytest.raises(ValueError, match=r"depths must be three block counts >= 1 \(stages A, B, C\), got \(3, 0, 3\)"):
        InceptionResNetV2((3, 0, 3))


def test_stochastic_depth_on_every_residual_block():
    model = cnnzoo.create_model("inception_resnet_v2", drop_path_rate=0.5)
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert len(gates) == 40
    assert gates[0].survival_prob == pytest.approx(1 - 0.5 / 40) and gates[-1].survival_prob == pytest.approx(0.5)
    assert sum(g.survival_prob for g in gates) == pytest.approx(40 - 0.5 * 41 / 2)


def test_dropped_block_is_not_computed():
    torch.manual_seed(0)
    model = cnnzoo.create_model("inception_resnet_v2_paper", drop_path_rate=0.9, drop_path_schedule="uniform").train()
    blocks = [m for m in model.modules() if isinstance(m, (Block35, Block17, Block8))]
    calls = [0] * len(blocks)
    for i, b in enumerate(blocks):
        b.conv2d.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    stream = GateStream(3)
    expected = [stream.draw() < 0.1 for _ in blocks]  # the model's stream, reseeded alike, draws the same
    seed_gates(model, 3)
    model(torch.randn(2, 3, 75, 75)).sum().backward()
    assert 0 < sum(expected) < len(blocks)
    assert calls == [int(k) for k in expected]
    assert [b.conv2d.weight.grad is not None for b in blocks] == expected


def test_dropout_keep_08_before_the_classifier():
    """Figure 15: "Dropout (keep 0.8)" between the average pool and the softmax."""
    torch.manual_seed(0)
    with torch.device("meta"):
        for name in ("inception_resnet_v2", "inception_resnet_v2_paper"):
            assert cnnzoo.create_model(name).dropout.p == pytest.approx(0.2)
    model = InceptionResNetV2((1, 1, 1)).train()
    seen = []
    model.classif.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    features = model.forward_features(torch.randn(2, 3, 75, 75))
    model.forward_head(features)
    pooled = features.mean((2, 3))
    active = pooled != 0  # (ReLU zeros stay zero)
    dropped = (seen[0] == 0) & active
    assert 0.1 < dropped[active].float().mean() < 0.3  # about 20% of the features
    kept = active & ~dropped
    assert torch.allclose(seen[0][kept], pooled[kept] / 0.8, atol=1e-5)


def test_paper_variant_has_the_papers_stem():
    """Figure 3's stem (Inception-v4's): 384 channels at 35 x 35, the stages widen from there."""
    from cnnzoo.models.inception_v4 import Stem

    with torch.device("meta"):
        paper = cnnzoo.create_model("inception_resnet_v2_paper")
        released = cnnzoo.create_model("inception_resnet_v2")
    assert isinstance(paper.stem, Stem) and not hasattr(paper, "mixed_5b")
    assert not hasattr(released, "stem") and hasattr(released, "mixed_5b")
    assert paper.stem.mixed_5a.conv.conv.out_channels + 192 == 384  # the last concat: 192 conv + 192 pooled
    assert [type(paper.repeat[0]).__name__, paper.repeat[0].conv2d.out_channels] == ["Block35", 384]
    assert paper.repeat_1[0].conv2d.out_channels == 1152 and paper.block8.conv2d.out_channels == 2144
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        small = InceptionResNetV2((1, 1, 1), stem="paper").eval()
        assert small.stem(x).shape == (1, 384, 35, 35)
        assert small(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="unknown stem 'v4': use 'released' or 'paper'"):
        InceptionResNetV2((1, 1, 1), stem="v4")


def test_inceptionresnetv2_built_directly_is_inception_resnet_v2():
    from cnnzoo.models.inception_resnet import InceptionResNetV2

    assert_built_as_registered(InceptionResNetV2, "inception_resnet_v2", dropout=0.2)


def test_blocks_alone_are_the_releases_unscaled_blocks():
    """``Block35()``, ``Block17()``, ``Block8()``: the release's widths, scale 1, a ReLU after the sum (not in place:
    a dropped block returns its input itself), no gate."""
    with torch.device("meta"):
        blocks = Block35(), Block17(), Block8()
    assert [b.conv2d.out_channels for b in blocks] == [320, 1088, 2080]
    assert [b.branch0.conv.in_channels for b in blocks] == [320, 1088, 2080]
    assert all(b.scale == 1.0 and b.drop_path is None for b in blocks)
    assert all(isinstance(b.act, torch.nn.ReLU) and not b.act.inplace for b in blocks)
    assert all(b.conv2d.bias is not None for b in blocks)  # the release's final 1x1 of each block has a bias
    x = torch.randn(2, 320, 5, 5)
    block = Block35().eval()
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x + block.transform(x)))  # act(x + 1.0 * F(x))


def test_reductions_alone_take_the_releases_widths():
    from cnnzoo.layers import ConvBnAct
    from cnnzoo.models.inception_resnet import mixed_6a, mixed_7a

    with torch.device("meta"):
        reduction_a, reduction_b = mixed_6a(ConvBnAct), mixed_7a(ConvBnAct)
    assert reduction_a.branch0.conv.in_channels == 320 and reduction_b.branch0[0].conv.in_channels == 1088
    assert reduction_a(torch.empty(1, 320, 35, 35, device="meta")).shape == (1, 1088, 17, 17)
    assert reduction_b(torch.empty(1, 1088, 17, 17, device="meta")).shape == (1, 2080, 8, 8)
