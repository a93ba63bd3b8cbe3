"""The fast MAC counter against torch's FlopCounterMode, and its hand-derivable cases."""

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.analysis import complexity
from cnnzoo.analysis.complexity import (check_input_size, compare_models, count_macs, count_params, example_input,
                                        flop_counter_macs, meta_model, min_input_size, module_macs, share, trace,
                                        weight_depth)


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

    message = ("cnnzoo's MAC counter cannot count einsum; add it to _op_macs in cnnzoo/analysis/complexity.py "
               "(and check it against FlopCounterMode)")
    with pytest.raises(NotImplementedError, match=f"^{re.escape(message)}$"):
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
    # The paper's AlexNet without its fc layers: conv1 (11x11, stride 4, no padding) then three 3x3 stride-2 max
    # pools need 4 x (2 x (2 x 3 + 1) + 1) + 11 = 67 pixels (66 leaves the last pool a 2x2 map).
    assert min_input_size("alexnet", features_only=True) == 67


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
    """A conv and a linear layer of ``width``, and a layer never called; ``extra`` adds a 1x1 conv."""

    def __init__(self, width: int, extra: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        if extra:
            self.extra = nn.Conv2d(width, width, 1, bias=False)
        self.act = nn.ReLU()
        self.unused = nn.Linear(2, 2, bias=False)  # like an auxiliary head at evaluation: params, no MACs
        self.fc = nn.Linear(width, 2, bias=False)

    def forward(self, x):
        x = self.conv(x)
        x = self.extra(x) if hasattr(self, "extra") else x
        return self.fc(self.act(x).mean((2, 3)))


def test_compare_models_puts_shared_modules_side_by_side():
    rows = compare_models(Two(4, extra=True), Two(8), (3, 8, 8))
    # conv: 3 x 9 x width weights, each used at 64 positions; fc: width x 2; extra (only in the first model) has
    # no row, act (neither params nor MACs) none either; "" is the whole models, extra's 16 x 64 MACs included.
    assert list(rows) == ["conv", "unused", "fc", ""]
    assert rows["conv"] == (108, 216, 6_912, 13_824)
    assert rows["unused"] == (4, 4, 0, 0)
    assert rows["fc"] == (8, 16, 8, 16)
    assert rows[""] == (136, 236, 7_944, 13_840)
    with pytest.raises(ValueError, match="give input_size"):
        compare_models(Two(4), Two(8))
    # Both at the first model's size by default (ResNet-18's 224, not ResNet-20's 32).
    resnet18, resnet20 = meta_model("resnet18"), meta_model("resnet20")
    macs18, macs20 = (flop_counter_macs(m, 224)[""] for m in (resnet18, resnet20))
    assert compare_models(resnet18, resnet20)[""] == (11_689_512, 269_722, macs18, macs20)


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
    one_input_channel = nn.Sequential(nn.ConvTranspose2d(1, 2, 3, bias=False))  # weight 1 x 2 x 3 x 3
    assert count_macs(one_input_channel, (1, 4, 4)) == 16 * 18


def test_batched_and_bias_adding_products_count_their_inner_dimension():
    class Products(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 4, 5))
            self.b = nn.Parameter(torch.randn(5))

        def forward(self, x):  # x: 1 x 2 x 3 x 4
            a, m = x[0], x[0, 0]  # 2 x 3 x 4 and 3 x 4
            return (torch.bmm(a, self.w).sum()  # 2 x 3 x 5 outputs x 4 = 120
                    + torch.addmm(self.b, m, self.w[0]).sum()  # 3 x 5 outputs x 4 = 60
                    + torch.addmm(self.b, mat1=m, mat2=self.w[0]).sum()  # 60
                    + torch.baddbmm(self.b, a, self.w).sum()  # 120
                    + torch.baddbmm(self.b, batch1=a, batch2=self.w).sum())  # 120

    assert count_macs(Products(), (2, 3, 4)) == 480 == flop_counter_macs(Products(), (2, 3, 4))[""]


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


class Nested(nn.Module):
    """A block with its own functional convs around a child conv: self MACs apart from the child's."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 2, 1, 1))
        self.child = nn.Conv2d(2, 2, 1, bias=False)

    def forward(self, x):
        x = F.conv2d(x, self.w)  # 2 x 4 x 4 outputs x 2 = 64 MACs
        return F.conv2d(self.child(x), self.w)  # the child's 64, then 64 more


def test_trace_records_ops_and_self_macs_when_asked():
    model = nn.Sequential(Nested())
    plain = trace(model, (2, 4, 4))
    assert plain.ops == [] and plain.input_shape == (1, 2, 4, 4)
    tr = trace(model, (2, 4, 4), record_ops=True)
    calls = {c.name: c for c in tr.calls}
    assert calls["0"].module is model[0] and calls["0.child"].module is model[0].child
    assert (calls["0"].macs, calls["0"].self_macs, calls["0.child"].self_macs, calls[""].self_macs) == (192, 128, 64, 0)
    convs = [op for op in tr.ops if op.name == "conv2d"]  # (ops also lists attribute reads and the like)
    assert [op.module for op in convs] == ["0", "0.child", "0"]
    first, child, last = convs
    assert first.inputs[0] == calls[""].inputs[0]  # the traced input
    assert child.inputs[0] == first.outputs[0] and last.inputs[0] == child.outputs[0]
    assert last.outputs == calls[""].outputs
    alive = {id(t) for t in tr.tensors}  # the trace keeps every recorded tensor, so the ids stay unique
    assert all(i in alive for op in convs for i in op.inputs[:1] + op.outputs)


def test_a_model_without_weight_layers_has_depth_zero():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(1, 2)  # no input tensor: nothing behind it

    assert weight_depth(Constant(), (3, 4, 4)) == 0


def test_example_input_follows_the_model():
    lenet = cnnzoo.create_model("lenet5")  # one input channel, 32 x 32
    assert example_input(lenet).shape == (1, 1, 32, 32) and example_input(lenet, 40).shape == (1, 1, 40, 40)
    plain = nn.Conv2d(3, 4, 3).double()  # no default_cfg: RGB at the size given; the model's dtype
    x = example_input(plain, 8, batch_size=2)
    assert (x.shape, x.dtype) == ((2, 3, 8, 8), torch.float64)
    with pytest.raises(ValueError, match="^give input_size: this model was not built by create_model and has no "
                                         "default_cfg$"):
        example_input(plain)


def test_meta_models_skip_random_init_and_batch_norm_arithmetic():
    """What ``_MetaShortcuts`` promises: on the meta device, init functions and batch norm never reach torch."""
    from torch.overrides import TorchFunctionMode

    reached = []

    class Recorder(TorchFunctionMode):  # outside the counter's mode: sees what the counter passes on
        def __torch_function__(self, func, types, args=(), kwargs=None):
            reached.append(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    with Recorder():
        meta_model("resnet18")
    assert "empty" in reached and not complexity._INIT & set(reached)  # the layers built, none initialised
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).eval())
    reached.clear()
    with Recorder():
        count_macs(net, (3, 8, 8))
    assert "conv2d" in reached and "batch_norm" not in reached
