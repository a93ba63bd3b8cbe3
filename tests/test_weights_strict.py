"""The weight importer is strict about each fault on its own: one unexpected key, one missing key, one wrong shape
is each a clear error, and the model keeps its weights when the import is refused."""

import re

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.weights import (_fit_to_model, adapt_input_conv, check_state_dict, fill_bn_counters, import_weights,
                            read_weight_file, register_converter, rename_modules)
from conftest import assert_warned_at


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


def test_one_integer_tensor_for_a_float_weight_alone_is_refused():
    weights = state()
    weights["conv.weight"] = weights["conv.weight"].to(torch.int64)
    refused(Tiny(), weights, "dtype mismatches (1): conv.weight: file torch.int64 vs model torch.float32")


class TwoStems(nn.Module):
    """Two first convs on the image (and a classifier ``fc``, its class's ``classifier``), to fit weights to."""

    classifier = "fc"

    def __init__(self, in_chans: int = 3, classes: int = 5, head: bool = True):
        super().__init__()
        self.stem_a = nn.Conv2d(in_chans, 4, 3)
        self.stem_b = nn.Conv2d(in_chans, 4, 3)
        self.mid = nn.Conv2d(4, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        if head:
            self.fc = nn.Linear(4, classes)


def test_fit_adapts_the_input_convs_refits_the_classifier_and_leaves_real_mismatches():
    torch.manual_seed(0)
    file = TwoStems().state_dict()  # 3 channels, 5 classes
    model = TwoStems(in_chans=1, classes=2)
    fitted = dict(file)
    notes = _fit_to_model(model, fitted, 3, 5)
    assert notes == ["first conv stem_a.weight, stem_b.weight adapted from 3 input channels",
                     "fc.weight, fc.bias freshly initialised (the weights classify 5 classes)"]
    assert torch.equal(fitted["stem_a.weight"], adapt_input_conv(1, file["stem_a.weight"]))
    assert torch.equal(fitted["fc.weight"], model.fc.weight) and fitted["fc.weight"] is not model.fc.weight

    # A conv that differs in more than its input channels, and a BN of another width (whose trailing shape
    # matches trivially), are not this model's weights: left as they are for check_state_dict to refuse.
    other = {**file, "mid.weight": torch.randn(4, 2, 3, 3), "bn.weight": torch.randn(7)}
    kept = dict(other)
    assert _fit_to_model(TwoStems(), kept, 3, 5) == []
    assert kept["mid.weight"] is other["mid.weight"] and kept["bn.weight"] is other["bn.weight"]


def test_fit_drops_the_heads_the_model_was_built_without_and_nothing_else():
    file = {**TwoStems().state_dict(), "fc.extra.weight": torch.ones(1), "aux1.conv.weight": torch.ones(1),
            "stray.weight": torch.ones(1), "fcx.weight": torch.ones(1)}
    fitted = dict(file)
    assert _fit_to_model(TwoStems(head=False), fitted, 3, 5) == []
    assert sorted(set(file) - set(fitted)) == ["aux1.conv.weight", "fc.bias", "fc.extra.weight", "fc.weight"]
    stray = {**state(), "stray.weight": torch.ones(1)}
    assert _fit_to_model(Tiny(), stray, 2, 3) == [] and "stray.weight" in stray  # a class without `classifier`


def test_read_weight_file_is_a_deprecated_load_file(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(state(), path)
    with pytest.warns(DeprecationWarning) as caught:
        weights = read_weight_file(path)
    assert [str(w.message) for w in caught] == [
        "cnnzoo.weights.read_weight_file is deprecated; use cnnzoo.files.load_file"]
    assert_warned_at(caught[0], __file__)  # points at the caller
    assert sorted(weights) == sorted(state()) and torch.equal(weights["conv.weight"], state()["conv.weight"])
