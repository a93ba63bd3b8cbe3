import pytest
import torch

import cnnzoo
from cnnzoo.analysis.complexity import module_macs
from cnnzoo.engine import load_config, train
from cnnzoo.models.lenet import C3_TABLE, DIGIT_BITMAPS, RBFOutput, ScaledTanh, Subsampling, rbf_prototypes

# Table I as the paper prints it: row i marks (X) the C3 maps that S2 map i feeds.
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


def params(module):
    return sum(p.numel() for p in module.parameters())


def test_c3_table_is_table_i():
    from_rows = tuple(tuple(i for i, row in enumerate(TABLE_I) if row[j] == "X") for j in range(16))
    assert C3_TABLE == from_rows


def test_trainable_parameters_per_layer_are_the_papers():
    model = cnnzoo.create_model("lenet5")
    counts = {name: params(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6", "output")}
    assert counts == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 0}
    assert params(model) == 60_000  # "60,000 trainable free parameters"
    assert not any(b.requires_grad for b in model.output.buffers())  # the RBF prototypes are fixed


def test_simplified_network_is_full_c3_average_pooling_and_a_linear_output():
    model = cnnzoo.create_model("lenet5_simplified")
    counts = {name: params(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6", "output")}
    assert counts == {"c1": 156, "s2": 0, "c3": 2416, "s4": 0, "c5": 48120, "f6": 10164, "output": 850}
    assert isinstance(model.output, torch.nn.Linear) and isinstance(model.s2.pool, torch.nn.AvgPool2d)
    relu = cnnzoo.create_model("lenet5_simplified", act_layer=torch.nn.ReLU)
    assert isinstance(relu.act, torch.nn.ReLU) and params(relu) == 61_706


def test_digit_prototypes_are_7x12_plus_minus_one_bitmaps():
    assert [(len(b), {len(row) for row in b}) for b in DIGIT_BITMAPS] == [(12, {7})] * 10
    prototypes = cnnzoo.create_model("lenet5").output.weight
    assert prototypes.shape == (10, 84) and set(prototypes.unique().tolist()) == {-1.0, 1.0}
    assert prototypes[1].view(12, 7)[:, 3].tolist() == [-1.0] + [1.0] * 10 + [-1.0]  # the "1" has its stroke
    hamming = (prototypes[:, None] != prototypes[None]).sum(-1) + 84 * torch.eye(10, dtype=torch.long)
    assert hamming.min() >= 12  # every pair of digits differs in at least 12 of the 84 pixels


def test_rbf_output_is_minus_the_squared_distance_to_each_prototype():
    torch.manual_seed(0)
    rbf = RBFOutput(rbf_prototypes(10))
    x = torch.randn(3, 84)
    expected = -((x[:, None, :] - rbf.weight[None]) ** 2).sum(-1)
    assert torch.allclose(rbf(x), expected, atol=1e-4)
    at_prototypes = rbf(rbf.weight)  # F6 exactly on prototype i: distance 0 to class i, the best
    assert torch.equal(at_prototypes.argmax(1), torch.arange(10)) and at_prototypes.diagonal().abs().max() < 1e-4


def test_cross_entropy_on_the_outputs_is_the_map_criterion_without_the_rubbish_class():
    """Section II.C: E = y_D + log(e^-j + sum_i e^-y_i) with y the distances; cross-entropy on -y has no j term."""
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5")
    x, labels = torch.randn(4, 1, 32, 32), torch.tensor([0, 3, 7, 9])
    f6 = model.forward_head(model.forward_features(x), pre_logits=True)
    y = ((f6[:, None, :] - model.output.weight[None]) ** 2).sum(-1)
    criterion = (y[torch.arange(4), labels] + torch.logsumexp(-y, 1)).mean()
    assert torch.nn.functional.cross_entropy(model(x), labels).item() == pytest.approx(criterion.item(), rel=1e-5)


def test_other_class_counts_get_fixed_random_codes_that_reset_keeps():
    a, b = cnnzoo.create_model("lenet5", num_classes=26), cnnzoo.create_model("lenet5", num_classes=26)
    assert a.output.weight.shape == (26, 84) and set(a.output.weight.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a.output.weight, b.output.weight)  # the same code whatever the global seed
    assert params(a) == 60_000
    a.reset_classifier(3)
    assert isinstance(a.output, RBFOutput) and torch.equal(a.output.weight, rbf_prototypes(3))
    assert "output.weight" in a.state_dict()  # a trained model's prototypes travel with its weights
    a.reset_classifier(10)
    assert torch.equal(a.output.weight, rbf_prototypes(10)) and a(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_connections_are_the_papers():
    """Connections = multiply-accumulates + one bias per output unit (the paper's counts, Section II.B)."""
    model = cnnzoo.create_model("lenet5")
    macs = module_macs(model)
    units = {"c1": 6 * 28 * 28, "c3": 16 * 10 * 10, "c5": 120, "f6": 84}
    connections = {name: macs[name] + n for name, n in units.items()}
    assert connections == {"c1": 122_304, "c3": 151_600, "c5": 48_120, "f6": 10_164}


def test_each_c3_map_sees_only_its_s2_maps():
    torch.manual_seed(0)
    c3 = cnnzoo.create_model("lenet5").c3
    s2 = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        base = c3(s2)
        for i in range(6):
            poked = s2.clone()
            poked[:, i] += 1.0
            changed = (c3(poked) != base).flatten(2).any(2)[0]
            assert [j for j in range(16) if changed[j]] == [j for j, maps in enumerate(C3_TABLE) if i in maps]


def test_paper_network_trains():
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5")
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_trainable_subsampling_is_coefficient_times_sum_plus_bias_squashed():
    s = Subsampling(2, trainable=True)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([0.5, -2.0]))
        s.bias.copy_(torch.tensor([0.1, 0.0]))
    x = torch.arange(32.0).reshape(1, 2, 4, 4) / 100
    sums = x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    expected = ScaledTanh()(sums * s.weight[:, None, None] + s.bias[:, None, None])
    assert torch.allclose(s(x), expected, atol=1e-6)
    assert torch.allclose(Subsampling(2)(x), sums / 4)


def test_squashing_function_maps_plus_minus_one_to_themselves():
    f = ScaledTanh()
    assert f(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_simplified"])
def test_input_normalisation_is_the_papers(name):
    """Background (0) becomes -0.1, ink (1) becomes 1.175."""
    cfg = cnnzoo.model_cfg(name)
    assert cfg.input_size == (1, 32, 32) and cfg.num_classes == 10
    normalise = lambda p: (p - cfg.mean[0]) / cfg.std[0]  # noqa: E731
    assert normalise(0.0) == pytest.approx(-0.1) and normalise(1.0) == pytest.approx(1.175)


def test_other_input_sizes_are_a_clear_error():
    with pytest.raises(ValueError, match=r"^F6 needs 1x1 C5 maps, got 9x9: LeNet-5 takes 32x32 images "
                                         r"\(pad 28x28 MNIST digits by 2 pixels\)$"):
        cnnzoo.create_model("lenet5")(torch.zeros(1, 1, 64, 64))


def test_weights_are_uniform_in_plus_minus_2_4_over_the_fan_in():
    """Appendix A: every weight (and here every bias) uniform in [-2.4 / F_i, 2.4 / F_i], F_i the unit's fan-in;
    a subsampling unit sums 4 inputs, so its coefficient and bias get 2.4 / 4. Four models, values over bound."""
    groups = {"conv and linear biases": [], "subsampling coefficients": [], "subsampling biases": []}
    for seed in range(4):
        torch.manual_seed(seed)
        for m in cnnzoo.create_model("lenet5").modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                bound = 2.4 / m.weight[0].numel()
                w = m.weight.detach()
                assert w.abs().max() <= bound and w.max() > 0.7 * bound and w.min() < -0.7 * bound, m
                groups["conv and linear biases"].append(m.bias.detach() / bound)
            elif isinstance(m, Subsampling):
                groups["subsampling coefficients"].append(m.weight.detach() / 0.6)
                groups["subsampling biases"].append(m.bias.detach() / 0.6)
    for name, values in groups.items():
        scaled = torch.cat(values)  # in [-1, 1], spread over all of it
        assert scaled.abs().max() <= 1 and scaled.max() > 0.9 and scaled.min() < -0.9, name


def test_the_simplified_network_keeps_pytorch_init_and_learns_at_the_default_rate(tmp_path):
    """The paper's +-2.4 / F_i with a linear output sits at chance under plain SGD; the courses' network keeps
    PyTorch's layer defaults (bound 1 / sqrt(F_i): 0.05 for C5's 400 inputs, against the paper's 0.006)."""
    torch.manual_seed(0)
    c5 = cnnzoo.create_model("lenet5_simplified").c5.weight.detach()
    assert 3 * 2.4 / 400 < c5.abs().max() <= 1 / 400**0.5
    result = train(load_config(None, {"model": "lenet5_simplified", "out": str(tmp_path), "tensorboard": False}))
    assert result.top1 > 90  # the embedded digits, the default 10 epochs at lr 0.1


def test_direct_construction_is_the_paper_network_on_one_channel_and_ten_classes():
    from cnnzoo.models.lenet import LeNet5

    model = LeNet5()
    assert model.c1.in_channels == 1 and model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    relu = LeNet5(act_layer=torch.nn.ReLU)
    assert all(isinstance(m.act, torch.nn.ReLU) for m in (relu.s2, relu.s4, relu))


def test_features_are_s2_s4_c5_and_the_head_widths_are_120_and_84():
    model = cnnzoo.create_model("lenet5").eval()
    assert model.feature_info == [dict(num_chs=6, reduction=2, module="s2"), dict(num_chs=16, reduction=4, module="s4"),
                                  dict(num_chs=120, reduction=32, module="c5")]
    x = torch.zeros(2, 1, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 1, 1) and model.num_features == 120
    assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
    assert model.head_hidden_size == 84
    # the Table I connection lists are structure, not weights: a state_dict holds none of them
    assert not [k for k in model.state_dict() if "inputs" in k or "unsort" in k]


def test_reset_classifier_keeps_rbf_units_and_passes_the_pooling_on():
    model = cnnzoo.create_model("lenet5").double()
    model.reset_classifier(1)
    assert isinstance(model.output, RBFOutput) and model.output.weight.dtype == torch.float64
    model.reset_classifier(0)
    assert isinstance(model.output, torch.nn.Identity)
    assert model(torch.zeros(2, 1, 32, 32, dtype=torch.float64)).shape == (2, 84)
    model.reset_classifier(0, "")
    assert model.global_pool.is_identity()
    model.reset_classifier(4, global_pool="avg")
    assert not model.global_pool.is_identity() and model.output.out_features == 4
    linear = cnnzoo.create_model("lenet5_simplified")
    linear.reset_classifier(5)
    assert isinstance(linear.output, torch.nn.Linear) and linear.output.out_features == 5
