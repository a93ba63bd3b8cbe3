"""The fast MAC counter against torch's FlopCounterMode, and its hand-derivable cases."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.analysis import complexity
from cnnzoo.analysis.complexity import (check_input_size, compare_models, count_macs, count_params, flop_counter_macs,
                                        meta_model, min_input_size, module_macs, share, trace, weight_depth)


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


@pytest.mark.parametrize("name, depth", [("resnet18", 18), ("resnet50", 50), ("resnet110", 110),
                                         ("resnext50_32x4d", 50)])  # a grouped conv is not a depthwise one
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
    assert meta_model("resnet20", num_classes=7).fc.out_features == 7  # keywords reach create_model


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


def test_weights_and_groups_given_by_keyword_are_read():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Parameter(torch.randn(4, 1, 3, 3))
            self.pw = nn.Parameter(torch.randn(4, 4, 1, 1))
            self.fc = nn.Parameter(torch.randn(2, 4))

        def forward(self, x):
            x = F.conv2d(x, self.dw, None, 1, 1, 1, groups=4)  # six positional arguments, groups by keyword
            x = F.conv2d(x, weight=self.pw)
            x = F.conv2d(x, self.pw, None, 1, 0, 1)  # six positional arguments, groups left at 1
            return F.linear(input=x.mean((2, 3)), weight=self.fc)  # the input by keyword keeps its depth

    # depthwise: 4 x 8 x 8 outputs x 9 = 2,304; pointwise: 256 outputs x 4 = 1,024, twice; linear: 2 x 4 = 8
    assert count_macs(Net(), (4, 8, 8)) == 2_304 + 2 * 1_024 + 8
    assert weight_depth(Net(), (4, 8, 8)) == 3  # the depthwise conv counts with its pointwise conv


def test_trace_records_each_calls_depth_and_tensors():
    model = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    tr = trace(model, (3, 8, 8), record_ops=True)
    calls = {c.name: c for c in tr.calls}
    assert [c.name for c in tr.calls] == ["0", "1", "2", "3", ""]
    assert [calls[n].depth for n in ("0", "1", "2", "3", "")] == [0, 1, 1, 2, 2]  # the input itself is depth 0
    assert [calls[n].output_shape for n in ("0", "1", "3")] == [(1, 3, 8, 8), (1, 4, 6, 6), (1, 4, 4, 4)]
    assert calls["0"].outputs == calls["0"].inputs == calls["1"].inputs  # the identity hands its input on
    assert calls["2"].inputs == calls["1"].outputs and calls["3"].inputs == calls["2"].outputs
    assert calls[""].outputs == calls["3"].outputs and len(calls[""].outputs) == 1


def test_min_input_size_is_the_least_the_model_takes():
    # ResNet-18: padded convs and global pooling take any size; VGG-16: five 2x2 max pools need 2^5 pixels;
    # Inception-v3: 75 (torchvision's documented minimum); the paper's AlexNet: its 6x6x256 fc input fixes 227.
    assert [min_input_size(n) for n in ("resnet18", "vgg16", "inception_v3", "alexnet")] == [1, 32, 75, 227]
    assert min_input_size("vgg16", in_chans=1) == 32  # probed with the channels the model was built for


def test_check_input_size_names_the_minimum(monkeypatch):
    check_input_size("alexnet_tv", 63)  # its least
    check_input_size("resnet18", 1)
    with pytest.raises(ValueError, match=r"^input size 62 is too small for alexnet_tv: it needs at least 63x63$"):
        check_input_size("alexnet_tv", 62)
    with pytest.raises(ValueError, match=r"^input size must be a positive number of pixels, got 0$"):
        check_input_size("resnet18", 0)

    def no_search(name, **kwargs):
        raise AssertionError("the model's own input size needs no search")

    monkeypatch.setattr(complexity, "min_input_size", no_search)
    check_input_size("alexnet_tv", 224)  # the trainer checks every run: its default size must stay instant


def test_share_is_a_fraction_and_zero_of_nothing():
    assert (share(1, 4), share(3, 0)) == (0.25, 0.0)


class Two(nn.Module):
    """A conv and a linear layer of ``width``; ``extra`` adds a 1x1 conv the other model lacks."""

    def __init__(self, width: int, extra: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.extra = nn.Conv2d(width, width, 1, bias=False) if extra else nn.Identity()
        self.fc = nn.Linear(width, 2, bias=False)

    def forward(self, x):
        return self.fc(self.extra(self.act(self.conv(x))).mean((2, 3)))


def test_compare_models_puts_shared_modules_side_by_side():
    rows = compare_models(Two(4, extra=True), Two(8), (3, 8, 8))
    # conv: 3 x 9 x width weights, each used at 64 positions; fc: width x 2; extra (only in the first): 16
    # weights x 64; act has neither params nor MACs; "" is the whole models.
    assert list(rows) == ["conv", "extra", "fc", ""]
    assert rows["conv"] == (108, 216, 6_912, 13_824)
    assert rows["extra"] == (16, 0, 1_024, 0)
    assert rows["fc"] == (8, 16, 8, 16)
    assert rows[""] == (132, 232, 7_944, 13_840)
    with pytest.raises(ValueError, match="give input_size"):
        compare_models(Two(4), Two(8))
    resnet18, resnet34 = meta_model("resnet18"), meta_model("resnet34")  # by default at the first one's size, 224
    macs18, macs34 = (flop_counter_macs(m, 224)[""] for m in (resnet18, resnet34))
    assert compare_models(resnet18, resnet34)[""] == (11_689_512, 21_797_672, macs18, macs34)


def test_transposed_conv_counts_each_input_scattered_over_its_kernel():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, bias=False))
    # weight 4 x 6 x 3 x 3: each of the 4 x 5 x 5 = 100 inputs multiplies 6 x 9 = 54 weights
    assert count_macs(model, (4, 5, 5)) == 5_400 == flop_counter_macs(model, (4, 5, 5))[""]

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 6, 3, 3))

        def forward(self, x):
            return F.conv_transpose2d(x, weight=self.weight, stride=2)

    assert count_macs(Functional(), (4, 5, 5)) == 5_400


@pytest.mark.parametrize("channels, groups, depth", [(1, 1, 2), (2, 1, 2), (2, 2, 1), (4, 2, 2)])
def test_only_a_conv_with_one_group_per_input_channel_is_depthwise(channels, groups, depth):
    # A depthwise conv (groups = input channels > 1) adds no depth of its own; a plain conv on a one-channel
    # input (LeNet's first) and a grouped conv with several channels per group do.
    model = nn.Sequential(nn.Conv2d(channels, channels, 3, groups=groups), nn.Conv2d(channels, 4, 1))
    assert weight_depth(model, (channels, 8, 8)) == depth


def test_a_functional_conv_without_groups_is_not_depthwise():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(2, 2, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.weight)  # two input channels, groups left at its default, 1

    assert weight_depth(Net(), (2, 8, 8)) == 1
