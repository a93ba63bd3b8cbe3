"""The weight importer is strict about each fault on its own: one unexpected key, one missing key, one wrong shape
is each a clear error, and the model keeps its weights when the import is refused."""

import re

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.weights import check_state_dict, fill_bn_counters, import_weights, register_converter, rename_modules


class Tiny(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, classes)


def state(classes: int = 3, seed: int = 1) -> dict:
    torch.manual_seed(seed)
    return Tiny(classes).state_dict()


def refused(model: nn.Module, state_dict: dict, message: str) -> None:
    """``import_weights`` raises ValueError with exactly ``message`` after the model's name, and loads nothing."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="^" + re.escape(f"weights do not fit {type(model).__name__}: {message}") + "$"):
        import_weights(model, state_dict)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_state_dict_that_fits_loads_every_tensor():
    model, weights = Tiny(), state()
    assert import_weights(model, weights) is model
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    check_state_dict(model, weights)  # no error


def test_one_unexpected_key_alone_is_refused():
    weights = state()
    weights["extra.weight"] = torch.zeros(1)
    refused(Tiny(), weights, "unexpected keys (1): extra.weight")


def test_one_missing_key_alone_is_refused():
    weights = state()
    del weights["fc.bias"]
    refused(Tiny(), weights, "missing keys (1): fc.bias")


def test_one_missing_buffer_alone_is_refused():
    weights = state()
    del weights["bn.running_var"]
    refused(Tiny(), weights, "missing keys (1): bn.running_var")


def test_one_shape_mismatch_alone_is_refused():
    weights = state()
    weights["fc.bias"] = torch.zeros(5)
    refused(Tiny(), weights, "shape mismatches (1): fc.bias: file (5,) vs model (3,)")


def test_every_fault_is_listed_sorted_and_long_lists_are_cut_at_20():
    weights = state(classes=5)
    del weights["conv.bias"], weights["bn.weight"]
    weights.update({f"extra{i:02d}": torch.zeros(1) for i in range(21)})
    extras = ", ".join(f"extra{i:02d}" for i in range(20))
    refused(Tiny(), weights, f"missing keys (2): bn.weight, conv.bias; unexpected keys (21): {extras} ...; "
                             "shape mismatches (2): fc.bias: file (5,) vs model (3,), "
                             "fc.weight: file (5, 4) vs model (3, 4)")
    exactly_20 = state()
    exactly_20.update({f"extra{i:02d}": torch.zeros(1) for i in range(20)})
    refused(Tiny(), exactly_20, f"unexpected keys (20): {extras}")


def test_a_peer_layout_goes_through_its_converter_then_the_same_checks():
    class Renamed(Tiny):
        pass

    @register_converter(Renamed, "peer")
    def _from_peer(sd):
        return rename_modules(sd, {"classifier": "fc"})

    weights = {("classifier." + k[3:] if k.startswith("fc.") else k): v for k, v in state().items()}
    model = import_weights(Renamed(), weights, source="peer")
    assert torch.equal(model.fc.weight, weights["classifier.weight"])
    weights["classifier.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"^weights do not fit Renamed: unexpected keys \(1\): fc.extra$"):
        import_weights(Renamed(), weights, source="peer")
    with pytest.raises(ValueError, match=r"^no 'timm' weight layout for Renamed; sources it can import: peer$"):
        import_weights(Renamed(), weights, source="timm")
    register_converter(Renamed, "another")(lambda sd: sd)
    with pytest.raises(ValueError, match=r"^no 'timm' weight layout for Renamed; sources it can import: another, peer$"):
        import_weights(Renamed(), weights, source="timm")
    with pytest.raises(ValueError, match=r"^no 'timm' weight layout for Tiny; sources it can import: none$"):
        import_weights(Tiny(), weights, source="timm")


def test_a_registered_family_reports_its_sources():
    with torch.device("meta"):
        model = cnnzoo.create_model("densenet121")
    with pytest.raises(ValueError, match=r"^no 'timm' weight layout for DenseNet; sources it can import: torchvision$"):
        import_weights(model, {}, source="timm")


def test_rename_modules_moves_only_whole_module_names():
    t = torch.zeros(1)
    got = rename_modules({"classifier.6.weight": t, "classifier.6.bias": t, "classifier.60.weight": t, "x": t},
                         {"classifier.6": "fc"})
    assert list(got) == ["fc.weight", "fc.bias", "classifier.60.weight", "x"]


def test_fill_bn_counters_adds_zero_counters_only_where_missing():
    sd = {"a.running_mean": torch.zeros(2), "b.running_mean": torch.zeros(2), "b.num_batches_tracked": torch.tensor(7)}
    got = fill_bn_counters(sd)
    assert got is sd
    assert got["a.num_batches_tracked"].item() == 0 and got["a.num_batches_tracked"].dtype == torch.int64
    assert got["b.num_batches_tracked"].item() == 7
    assert sorted(got) == ["a.num_batches_tracked", "a.running_mean", "b.num_batches_tracked", "b.running_mean"]
