import re

import pytest
import torch

from cnnzoo.analysis import count_macs, count_params
from cnnzoo.analysis.complexity import meta_model, trace
from cnnzoo.cli import main
from cnnzoo.models.shufflenet import (STAGE_OUT_CHANNELS, TABLE_1_MFLOPS, ChannelShuffle, ShuffleNetV1,
                                      ShuffleUnit, channel_shuffle)

GROUPS = sorted(STAGE_OUT_CHANNELS)


@pytest.mark.parametrize("g", GROUPS)
def test_table_1_stage_outputs_and_complexity(g):
    model = meta_model(f"shufflenet_v1_g{g}")
    calls = {c.name: c.output_shape for c in trace(model).calls}
    assert calls["maxpool"] == (1, 24, 56, 56)
    expected = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                8: (384, 768, 1536)}[g]
    assert [calls[f"stages.{i}"] for i in range(3)] == [(1, c, s, s) for c, s in zip(expected, (28, 14, 7))]
    assert [f["num_chs"] for f in model.feature_info] == [24, 24, *expected]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [len(stage) for stage in model.stages] == [4, 8, 4]
    # Table 1's complexity row (143 / 140 / 137 / 133 / 137 M): ours is 0.1 to 1.4 M above it, under 1%.
    assert 0 <= count_macs(model) / 1e6 - TABLE_1_MFLOPS[g] < 1.5


def test_grouping_of_the_pointwise_convolutions():
    model = meta_model("shufflenet_v1_g3")
    units = [u for stage in model.stages for u in stage]
    assert units[0].conv1.groups == 1  # the first pointwise layer is not grouped (input of 24 channels)
    assert all(u.conv1.groups == 3 for u in units[1:]) and all(u.conv3.groups == 3 for u in units)
    assert all(u.conv2.groups == u.conv2.in_channels for u in units)  # depthwise
    assert [u.conv1.out_channels for u in units[:2]] == [60, 60]  # bottleneck: 1/4 of the output


def test_channel_shuffle_transposes_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    maps = torch.arange(6.0).view(1, 6, 1, 1) + torch.rand(1, 1, 3, 2)  # each channel's map stays whole
    assert torch.equal(channel_shuffle(maps, 2), maps[:, [0, 3, 1, 4, 2, 5]])


def test_stride_1_unit_adds_its_input_and_shuffles_by_default():
    """Fig. 2b: relu(x + branch(x)); the shuffle sits after the first 1x1 unless Table 3's "no shuffle" is asked."""
    torch.manual_seed(0)
    unit = ShuffleUnit(24, 24, groups=3).eval()
    assert isinstance(unit.shuffle, torch.nn.Module) and not isinstance(unit.shuffle, torch.nn.Identity)
    x = torch.randn(2, 24, 5, 5)
    with torch.no_grad():
        branch = unit.bn3(unit.conv3(unit.bn2(unit.conv2(unit.shuffle(unit.act1(unit.bn1(unit.conv1(x))))))))
        assert torch.allclose(unit(x), torch.relu(x + branch), atol=1e-6)


@pytest.mark.parametrize("shuffle", [True, False])
def test_shuffle_lets_every_output_group_see_every_input_group(shuffle):
    """Fig. 1: without the shuffle, stacked group convolutions keep each group to itself."""
    torch.manual_seed(0)
    unit = ShuffleUnit(36, 36, groups=3, channel_shuffle=shuffle).eval()  # bottleneck: 3 groups of 3
    x = torch.randn(1, 36, 5, 5)
    y = x.clone()
    y[:, :12] += 1.0  # change the first input group only
    with torch.no_grad():
        changed = (unit.bn3(unit.conv3(unit.bn2(unit.conv2(unit.shuffle(unit.act1(unit.bn1(unit.conv1(y))))))))
                   - unit.bn3(unit.conv3(unit.bn2(unit.conv2(unit.shuffle(unit.act1(unit.bn1(unit.conv1(x)))))))))
    per_group = changed.abs().sum((0, 2, 3)).view(3, 12).sum(1)
    assert (per_group > 0).tolist() == ([True, True, True] if shuffle else [True, False, False])


def test_no_shuffle_ablation_has_the_same_cost():
    torch.manual_seed(0)
    with torch.device("meta"):
        plain = ShuffleNetV1(groups=3, channel_shuffle=False)
    assert count_params(plain) == count_params(meta_model("shufflenet_v1_g3"))
    assert not any(type(m).__name__ == "ChannelShuffle" for m in plain.modules())


@pytest.mark.parametrize("name, mflops", [("shufflenet_v1_g3_0_5x", 38), ("shufflenet_v1_g3_1_5x", 292),
                                          ("shufflenet_v1_g3_2x", 524)])
def test_scaled_networks(name, mflops):
    assert round(count_macs(meta_model(name)) / 1e6) == mflops


def test_bad_groups_and_scale_are_one_line_errors():
    with pytest.raises(ValueError, match="groups must be one of"):
        ShuffleNetV1(groups=5)
    with pytest.raises(ValueError, match=r"^ShuffleNet scale must be positive \(the paper uses 0.25, 0.5, 1, 1.5, 2\), "
                                         r"got 0$"):
        ShuffleNetV1(scale=0)
    with pytest.raises(ValueError, match="do not split into 4 groups"):
        ShuffleNetV1(groups=4, scale=0.5)


def test_forward_stride_2_unit_concatenates_the_pooled_input():
    torch.manual_seed(0)
    unit = ShuffleUnit(24, 240, groups=3, stride=2, first_groups=1).eval()
    x = torch.rand(1, 24, 8, 8)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (1, 240, 4, 4)
    assert torch.allclose(out[:, :24], torch.relu(torch.nn.functional.avg_pool2d(x, 3, 2, 1)))


def test_info_shows_140_m_mult_adds_matching(capsys):
    main(["info", "shufflenet_v1_g3"])
    out = capsys.readouterr().out
    macs_line = next(line for line in out.splitlines() if line.strip().startswith("MACs"))
    assert "137.5 M" in macs_line and "reference 140 M" in macs_line and "✓ match" in macs_line


def test_default_is_the_papers_1x_g3_with_its_shuffles_and_stem():
    """ShuffleNet 1x (g = 3), the paper's reference network; the stem is a 3x3 stride-2 conv of 24 filters and a
    3x3 stride-2 max pool (Table 1)."""
    with torch.device("meta"):
        model = ShuffleNetV1()
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in meta_model("shufflenet_v1_g3").state_dict().items()}
    assert model.fc.out_features == 1000 and model.conv1.in_channels == 3
    assert all(not isinstance(unit.shuffle, torch.nn.Identity) for stage in model.stages for unit in stage)
    conv, pool = model.conv1, model.maxpool
    assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (24, (3, 3), (2, 2), (1, 1))
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)


def test_a_scale_the_release_lacks_scales_the_stem_too():
    assert ShuffleNetV1(groups=1, scale=0.75).conv1.out_channels == 18  # 24 x 0.75; released scales: 0.5, 1, 1.5, 2


@pytest.mark.parametrize("args, what", [((25, 24, 3), "unit 25->24: input channels 25"),
                                        ((24, 40, 3, 2), "unit 24->40: bottleneck channels 10"),
                                        ((23, 48, 3, 2, 1), "unit 23->48: branch output channels 25"),
                                        ((24, 24, 3, 2), "unit 24->24: branch output channels 0")])
def test_a_unit_names_the_part_whose_channels_do_not_split(args, what):
    message = f"ShuffleNet {what} do not split into 3 groups; choose a scale or groups that divide the channels"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ShuffleUnit(*args)


def test_the_smallest_units_build_and_shuffle_from_two_groups():
    assert ShuffleUnit(4, 4, groups=1).conv1.out_channels == 1  # a one-channel bottleneck splits into one group
    assert isinstance(ShuffleUnit(8, 8, groups=2).shuffle, ChannelShuffle)
