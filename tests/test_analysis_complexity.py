"""The fast MAC counter against torch's FlopCounterMode, and its hand-derivable cases."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.analysis.complexity import (count_macs, count_params, flop_counter_macs, meta_model, module_macs,
                                        trace, weight_depth)


def nonzero(macs):
    return {k: v for k, v in macs.items() if v}


def test_torchvision_resnet50_macs_exact():
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    macs = module_macs(model, 224)
    assert macs[""] == 4_089_184_256
    assert nonzero(macs) == flop_counter_macs(model, 224)


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_every_model_counts_as_flop_counter_does(name):
    model = meta_model(name)
    assert nonzero(module_macs(model)) == flop_counter_macs(model)


class Toy(nn.Module):
    """A functional conv, a linear layer called twice and a matmul: the counter must see all three."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        x = F.conv2d(x, self.weight, padding=1)  # 8 x 10 x 10 outputs x 27 MACs = 21,600
        x = x.mean((2, 3))
        x = self.fc(self.fc(x))  # 2 x 64
        return x @ torch.ones(8, 5, device=x.device)  # 5 outputs x 8 = 40


def test_functional_and_shared_calls_are_counted():
    macs = module_macs(Toy(), (3, 10, 10))
    assert macs == {"": 21_600 + 128 + 40, "fc": 128}
    assert macs == {k: v for k, v in flop_counter_macs(Toy(), (3, 10, 10)).items()}


def test_uncountable_op_is_an_error():
    class Einsum(nn.Module):
        def forward(self, x):
            return torch.einsum("nc,nc->n", x, x)

    with pytest.raises(NotImplementedError, match="einsum"):
        count_macs(Einsum(), (4,))


@pytest.mark.parametrize("name, depth", [("resnet18", 18), ("resnet50", 50), ("resnet110", 110)])
def test_weight_depth_is_the_papers(name, depth):
    assert weight_depth(meta_model(name)) == depth


def test_depthwise_counts_with_its_pointwise_and_parallel_branches_do_not_add():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
            self.pw = nn.Conv2d(4, 4, 1)
            self.short = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.pw(self.dw(x)) + self.short(x)

    assert weight_depth(Net(), (4, 8, 8)) == 1


def test_meta_model_builds_without_allocating():
    meta, real = meta_model("resnet20"), cnnzoo.create_model("resnet20")
    assert all(p.is_meta for p in meta.parameters())
    assert count_params(meta) == count_params(real) == 269_722
    assert count_macs(meta) == count_macs(real) == 40_551_040


def test_trace_records_output_shapes():
    tr = trace(meta_model("resnet18"), 64)
    shapes = {c.name: c.output_shape for c in tr.calls}
    assert shapes["conv1"] == (1, 64, 32, 32)
    assert shapes["layer4"] == (1, 512, 2, 2)
    assert shapes[""] == (1, 1000)


def test_flop_counter_reference_gives_whole_macs_and_zero_without_products():
    assert flop_counter_macs(torch.nn.Sequential(torch.nn.ReLU()), (3, 4, 4)) == {"": 0}
    macs = flop_counter_macs(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3)), (3, 6, 6))
    assert macs[""] == 5 * 3 * 9 * 16 and all(type(v) is int for v in macs.values())
