import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.layers import LocalResponseNorm
from cnnzoo.models.vgg import VGG
from conftest import require_peer
from peer_models import assert_same_logits


def meta(name):
    with torch.device("meta"):
        return cnnzoo.create_model(name)


@pytest.mark.parametrize(
    "name, weight_layers, n_1x1",
    [("vgg11", 11, 0), ("vgg11_lrn", 11, 0), ("vgg13", 13, 0), ("vgg16_c", 16, 3), ("vgg16", 16, 0), ("vgg19", 19, 0)],
)
def test_table_1_depths(name, weight_layers, n_1x1):
    """The 'weight layers' row of Table 1 (convs + 3 FC), and configuration C's three 1x1 convs."""
    model = meta(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(fcs) == weight_layers and len(fcs) == 3
    assert sum(m.kernel_size == (1, 1) for m in convs) == n_1x1
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5


def test_config_c_has_1x1_where_d_has_3x3():
    c, d = meta("vgg16_c"), meta("vgg16")
    kernels = lambda m: [conv.kernel_size[0] for conv in m.features if isinstance(conv, nn.Conv2d)]  # noqa: E731
    assert [i for i, (a, b) in enumerate(zip(kernels(c), kernels(d))) if a != b] == [6, 9, 12]
    assert kernels(c)[6] == 1 and kernels(d)[6] == 3


def test_a_lrn_normalises_after_the_first_conv():
    model = meta("vgg11_lrn")
    assert [type(m) for m in model.features[:4]] == [nn.Conv2d, nn.ReLU, LocalResponseNorm, nn.MaxPool2d]
    lrn = model.features[2]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)  # Krizhevsky et al.'s, Section 3.3


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^unknown VGG layer 'conv3x64'; use 'conv<size>-<channels>', 'maxpool' or "
                                         r"'LRN'$"):
        VGG(["conv3x64"])


def test_a_column_alone_is_the_papers_network():
    """VGG(column) with no other argument: 1000 classes, RGB, no BN, dropout 0.5 after fc6 and fc7 (Section 3.1),
    the registered model's tensors."""
    from cnnzoo.models.vgg import _TABLE_1

    with torch.device("meta"):
        model = VGG(_TABLE_1["D"].split())
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(model) == shapes(meta("vgg16"))
    assert model.fc8.out_features == 1000 and model.features[0].in_channels == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (model.drop6.p, model.drop7.p) == (0.5, 0.5)


def test_feature_info_names_each_block_end_and_pool5():
    model = meta("vgg11_bn")
    info = [(f["module"], f["num_chs"], f["reduction"]) for f in model.feature_info]
    # A with BN: conv-BN-ReLU triples; each block's last ReLU, then the fifth pool
    assert info == [("features.2", 64, 1), ("features.6", 128, 2), ("features.13", 256, 4),
                    ("features.20", 512, 8), ("features.27", 512, 16), ("features.28", 512, 32)]
    assert all(isinstance(model.features[int(m.split(".")[1])], nn.ReLU) for m, _, _ in info[:-1])
    assert isinstance(model.features[28], nn.MaxPool2d)


# Every VGG torchvision has. vgg11 and vgg16_bn run at 32x32 (the smallest input), the rest at
# batch 1: each costs mainly the two 100M-parameter FC layers, whatever the input.
@pytest.mark.heavy  # eight 130M-parameter pairs: about a minute on 2 cores
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"])
def test_torchvision_weights_give_same_logits(name):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = getattr(torchvision.models, name)()
    assert_same_logits(name, peer, size=32, batch=2 if name in ("vgg11", "vgg16_bn") else 1)


def test_init_is_torchvisions_he_fan_out_for_convs_and_std_0_01_for_the_fc_layers():
    """torchvision's initialisation (the class's comment says why not the paper's): He et al.'s std
    sqrt(2 / fan_out) for the convs, std 0.01 for the FC layers, zero biases."""
    torch.manual_seed(0)
    model = VGG(["conv3-64", "maxpool", "conv3-128", "maxpool"], num_classes=10)
    conv = model.features[3]  # 64 -> 128, 3x3: fan_out 1,152 (fan_in would be 576)
    assert abs(conv.weight.std().item() - (2 / (128 * 9)) ** 0.5) < 0.002
    for fc in (model.fc6, model.fc7, model.fc8):
        assert abs(fc.weight.std().item() - 0.01) < 0.0005 and not fc.bias.any()
    assert not conv.bias.any()
