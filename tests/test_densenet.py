import copy
import re

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.analysis.memory import saved_activation_bytes
from cnnzoo.analysis import count_params
from cnnzoo.models.densenet import DenseLayer, DenseNet
from conftest import require_peer
from peer_models import assert_same_logits, randomize_batchnorm


# densenet121 at batch 2; the bigger ones at batch 1. All at 29x29, the smallest input they take.
@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
def test_torchvision_weights_give_same_logits(name):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    assert_same_logits(name, getattr(torchvision.models, name)(), size=29, batch=2 if name == "densenet121" else 1)


def test_imports_torchvisions_published_checkpoint_names():
    """The published .pth files say "norm.1" for "norm1" and, older than PyTorch 0.4, lack num_batches_tracked."""
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = randomize_batchnorm(torchvision.models.densenet121(), calibrate=torch.randn(4, 3, 29, 29)).eval()
    old = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
           for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    ours = cnnzoo.import_weights(cnnzoo.create_model("densenet121"), old, source="torchvision").eval()
    x = torch.randn(1, 3, 29, 29)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("name, depth, features", [
    ("densenet_bc_100_12", 100, 342), ("densenet_bc_250_24", 250, 1734), ("densenet_bc_190_40", 190, 2190)])
def test_cifar_depth_and_compression(name, depth, features):
    """L counts every conv and the FC; each transition halves the channels (theta = 0.5)."""
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == depth
    assert model.num_features == features
    n, k = (depth - 4) // 6, model.features.conv0.out_channels // 2
    after_block1 = 2 * k + n * k
    assert model.features.transition1.conv.out_channels == after_block1 // 2


def train_step(model, x):
    model.train()
    model.zero_grad()
    model(x).logsumexp(1).sum().backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_memory_efficient_matches_the_plain_model():
    """Same outputs, gradients and BN running statistics (each batch counted once) after a training step."""
    torch.manual_seed(0)
    plain = DenseNet(growth_rate=6, block_config=(3, 4), num_init_features=12, stem="cifar", num_classes=5)
    efficient = copy.deepcopy(plain)
    for m in efficient.modules():
        if hasattr(m, "memory_efficient"):
            m.memory_efficient = True
    x = torch.randn(4, 3, 16, 16)
    grads, grads_efficient = train_step(plain, x), train_step(efficient, x)
    for name, g in grads.items():
        assert torch.allclose(grads_efficient[name], g, atol=1e-5), name
    for (name, b), b_efficient in zip(plain.state_dict().items(), efficient.state_dict().values()):
        assert torch.allclose(b_efficient.float(), b.float(), atol=1e-6), name
    assert plain.features.denseblock1.denselayer1.norm1.num_batches_tracked == 1
    plain.eval(), efficient.eval()
    with torch.no_grad():
        assert torch.allclose(efficient(x), plain(x), atol=1e-5)


def test_memory_efficient_keeps_less_for_backward():
    """DenseNet-BC-100-12: stored concatenations and their BN-ReLU outputs grow as L^2; recomputed ones do not."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    plain = cnnzoo.create_model("densenet_bc_100_12").train()
    efficient = cnnzoo.create_model("densenet_bc_100_12", memory_efficient=True).train()
    kept, kept_efficient = saved_activation_bytes(plain, x), saved_activation_bytes(efficient, x)
    assert kept_efficient < 0.5 * kept


def test_direct_construction_defaults_are_densenet_121():
    """``DenseNet()`` alone is the paper's DenseNet-121 (k = 32, bn_size 4, theta 0.5, ImageNet stem)."""
    with torch.device("meta"):
        model, layer = DenseNet(), DenseLayer(64, 32)
        torchvision = require_peer("torchvision")
        assert count_params(model) == count_params(torchvision.models.densenet121()) == 7_978_856
    assert model.features.conv0.in_channels == 3 and model.fc.out_features == 1000
    assert layer.conv1.out_channels == 4 * 32 and layer.drop.p == 0.0 and not layer.memory_efficient
    assert model.features.denseblock1.denselayer1.drop.p == 0.0  # none by default, as torchvision


def test_unknown_stem_is_named():
    message = r"unknown DenseNet stem 'CIFAR': use 'imagenet' \(7x7/2 conv, max-pool\) or 'cifar' \(3x3 conv\)"
    with pytest.raises(ValueError, match=message):
        DenseNet(stem="CIFAR")


def test_settings_reach_every_dense_layer_and_the_cifar_stem_keeps_the_size():
    with torch.device("meta"):
        model = DenseNet(growth_rate=12, block_config=(2, 2, 2), num_init_features=24, bn_size=2, drop_rate=0.2,
                         stem="cifar", num_classes=10)
    layers = [m for m in model.modules() if isinstance(m, DenseLayer)]
    assert len(layers) == 6 and all(l.conv1.out_channels == 2 * 12 and l.drop.p == 0.2 for l in layers)
    # the CIFAR stem is a padded 3x3 conv: 32 -> 32, then two transitions halve it twice (Section 3)
    assert model.forward_features(torch.empty(1, 3, 32, 32, device="meta")).shape[-2:] == (8, 8)
