"""`cnnzoo.deploy`: BN folded where the data flow allows it, nothing else changed, same logits."""

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.deploy import conv_bn_pairs, deploy


@torch.no_grad()
def calibrated(name, size, **kwargs):
    """A model whose batch norms hold realistic running statistics (random init leaves 0 and 1)."""
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, **kwargs).train()
    model(torch.randn(2, model.default_cfg.in_chans, size, size))
    return model.eval()


def max_diff(a, b, x):
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("name, size", [("resnet20", 32), ("resnet18", 64), ("resnet50", 64)])
def test_resnets_fold_every_bn_and_keep_their_logits(name, size):
    model = calibrated(name, size)
    fast = deploy(model, size)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(3, 3, size, size)
    assert max_diff(model, fast, x) <= 1e-4
    assert max_diff(model, deploy(model, size, channels_last=False), x) <= 1e-4


class Patterns(nn.Module):
    """One foldable pair, and each thing that must stop a fold."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)  # foldable
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)  # output read twice
        self.shared, self.bn3, self.bn4 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.BatchNorm2d(8)  # conv called twice
        self.pre_bn, self.conv3 = nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1)  # BN before the conv
        self.drop = nn.Dropout(0.5)
        self.aux = nn.Linear(8, 5)  # training only
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = self.bn2(y) + y
        x = self.bn3(self.shared(x)) + self.bn4(self.shared(x))
        x = self.conv3(torch.relu(self.pre_bn(x)))
        out = self.fc(self.drop(x.mean((2, 3))))
        return (out, self.aux(x.mean((2, 3)))) if self.training else out


@torch.no_grad()
def test_only_safe_pairs_fold():
    torch.manual_seed(0)
    model = Patterns()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics and affine parameters
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2)
            m.bias.uniform_(-1, 1)
    model.eval()
    assert conv_bn_pairs(model, (3, 8, 8)) == [("conv1", "bn1")]
    fast = deploy(model, (3, 8, 8))
    assert isinstance(fast.bn1, nn.Identity) and isinstance(fast.drop, nn.Identity) and fast.aux is None
    assert all(isinstance(getattr(fast, n), nn.BatchNorm2d) for n in ("bn2", "bn3", "bn4", "pre_bn"))
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert max_diff(model, fast, torch.randn(2, 3, 8, 8)) <= 1e-5


def test_model_without_batch_norm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    fast = deploy(model, (3, 8, 8))
    assert max_diff(model, fast, torch.randn(2, 3, 8, 8)) <= 1e-6


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_every_registered_model_deploys(name):
    from cnnzoo.analysis import min_input_size

    size = max(min_input_size(name), min(32, cnnzoo.model_cfg(name).img_size))
    model = calibrated(name, size)
    fast = deploy(model, size, channels_last=False)  # the layout is tested above; spare big models a copy
    x = torch.randn(2, model.default_cfg.in_chans, size, size)
    with torch.no_grad():
        ref = model(x)
    assert max_diff(model, fast, x) <= 1e-4 * max(1.0, ref.abs().max().item())
