import pytest
import torch
from peer_models import assert_same_logits

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.layers import ConvBnAct
from cnnzoo.models.inception_resnet import mixed_6a
from cnnzoo.models.inception_v4 import DEPTHS, TABLE_1, InceptionC, reduction_a
from conftest import (assert_built_as_registered, assert_every_conv_built_by_conv_block, feature_shapes, meta_model,
                      require_peer)


def test_figure_9_grids_and_feature_info():
    model = meta_model("inception_v4")
    assert (len(model.inception_a), len(model.inception_b), len(model.inception_c)) == (4, 7, 3) == tuple(
        DEPTHS.values())
    assert all(isinstance(m, InceptionC) for m in model.inception_c)
    shapes, info = feature_shapes("inception_v4", 299)
    # Figure 3's stem ends at 35 x 35 x 384; Figures 4-8 keep 384, 1024 and 1536 channels at 35, 17 and 8.
    assert shapes == [(64, 147, 147), (160, 73, 73), (384, 35, 35), (1024, 17, 17), (1536, 8, 8)]
    assert [(i["num_chs"], i["reduction"]) for i in info] == [
        (64, 2), (160, 4), (384, 8), (1024, 16), (1536, 32)]


def test_reduction_a_follows_table_1():
    """Reduction-A's output width is n + m + input; Inception-ResNet-v2's row builds its released mixed_6a."""
    k, l, m, n = TABLE_1["inception_v4"]  # noqa: E741
    assert (k, l, m, n) == (192, 224, 256, 384)
    with torch.device("meta"):
        block = reduction_a(384, TABLE_1["inception_v4"])
        v2 = reduction_a(320, TABLE_1["inception_resnet_v2"])
        released = mixed_6a(ConvBnAct)
    assert block(torch.zeros(1, 384, 35, 35, device="meta")).shape == (1, n + m + 384, 17, 17)
    assert count_params(v2) == count_params(released)
    assert [p.shape for p in v2.parameters()] == [p.shape for p in released.parameters()]


def test_macs_at_299():
    # No reference figure exists; the count is recorded so that a change of layout shows.
    assert count_macs(meta_model("inception_v4")) == 12_253_974_624


def test_timm_weights_give_same_logits():
    timm = require_peer("timm")
    torch.manual_seed(0)
    assert_same_logits("inception_v4", timm.create_model("inception_v4"), 75, batch=1, source="timm")


def test_inceptionv4_built_directly_is_inception_v4():
    from cnnzoo.models.inception_v4 import InceptionV4

    assert_built_as_registered(InceptionV4, "inception_v4", dropout=0.2)


def test_stem_alone_takes_rgb_and_gives_384_maps_at_35():
    from cnnzoo.models.inception_v4 import Stem

    with torch.device("meta"):
        stem = Stem()
    assert stem.conv2d_1a.conv.in_channels == 3
    assert stem(torch.empty(1, 3, 299, 299, device="meta")).shape == (1, 384, 35, 35)  # Figure 3


def test_conv_block_reaches_every_convolution():
    from cnnzoo.models.inception_v4 import InceptionV4

    assert_every_conv_built_by_conv_block(InceptionV4)
