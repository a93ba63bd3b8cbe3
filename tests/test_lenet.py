import pytest
import torch

import cnnzoo
from cnnzoo.analysis.complexity import module_macs
from cnnzoo.models.lenet import C3_TABLE, ScaledTanh, Subsampling

# Table I as the paper prints it: row i marks (X) the C3 maps that S2 map i feeds.
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)
PAPER_OPTIONS = dict(c3_table=True, trainable_subsampling=True)


def params(module):
    return sum(p.numel() for p in module.parameters())


def test_c3_table_is_table_i():
    from_rows = tuple(tuple(i for i, row in enumerate(TABLE_I) if row[j] == "X") for j in range(16))
    assert C3_TABLE == from_rows


def test_trainable_parameters_per_layer_are_the_papers():
    model = cnnzoo.create_model("lenet5", **PAPER_OPTIONS)
    counts = {name: params(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6", "output")}
    assert counts == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 850}
    assert params(model) - counts["output"] == 60_000  # "60,000 trainable free parameters"
    assert params(cnnzoo.create_model("lenet5").c3) == 2416  # fully connected C3


def test_connections_are_the_papers():
    """Connections = multiply-accumulates + one bias per output unit (the paper's counts, Section II.B)."""
    model = cnnzoo.create_model("lenet5", **PAPER_OPTIONS)
    macs = module_macs(model)
    units = {"c1": 6 * 28 * 28, "c3": 16 * 10 * 10, "c5": 120, "f6": 84}
    connections = {name: macs[name] + n for name, n in units.items()}
    assert connections == {"c1": 122_304, "c3": 151_600, "c5": 48_120, "f6": 10_164}


def test_each_c3_map_sees_only_its_s2_maps():
    torch.manual_seed(0)
    c3 = cnnzoo.create_model("lenet5", c3_table=True).c3
    s2 = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        base = c3(s2)
        for i in range(6):
            poked = s2.clone()
            poked[:, i] += 1.0
            changed = (c3(poked) != base).flatten(2).any(2)[0]
            assert [j for j in range(16) if changed[j]] == [j for j, maps in enumerate(C3_TABLE) if i in maps]


def test_paper_options_train():
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5", **PAPER_OPTIONS)
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


def test_input_normalisation_is_the_papers():
    """Background (0) becomes -0.1, ink (1) becomes 1.175."""
    cfg = cnnzoo.model_cfg("lenet5")
    assert cfg.input_size == (1, 32, 32) and cfg.num_classes == 10
    normalise = lambda p: (p - cfg.mean[0]) / cfg.std[0]  # noqa: E731
    assert normalise(0.0) == pytest.approx(-0.1) and normalise(1.0) == pytest.approx(1.175)


def test_other_input_sizes_are_a_clear_error():
    with pytest.raises(ValueError, match="F6 needs 1x1 C5 maps, got 9x9: LeNet-5 takes 32x32 images"):
        cnnzoo.create_model("lenet5")(torch.zeros(1, 1, 64, 64))
