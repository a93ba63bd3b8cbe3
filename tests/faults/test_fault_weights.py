"""Category 3: damaged or foreign weight files. Every file goes through cnnzoo.files.load_file: a damaged,
foreign or crafted file is one line saying what is wrong (exit 2), a safetensors header is validated before
anything it declares is allocated, and a checkpoint's checksum reports a flipped bit."""

import json
import re
import os
import struct

import pytest
import torch
from fault_helpers import one_line
from safetensors.torch import save_file

import cnnzoo.files
from cnnzoo import cli, create_model
from cnnzoo.engine.trainer import load_trained
from cnnzoo.files import CheckpointError, load_checkpoint, load_file, save_checkpoint, save_safetensors

MARK = "a-string-to-find-in-the-file"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real cnnzoo checkpoint and weight file of a small resnet20."""
    folder = tmp_path_factory.mktemp("good")
    model = create_model("resnet20", num_classes=3, in_chans=1)
    meta = {"model": "resnet20", "num_classes": 3, "in_chans": 1}
    save_checkpoint(folder / "last.ckpt", {"model": model.state_dict(), "meta": meta, "config": {},
                                           "history": [{"note": MARK}], "epoch": 4})
    save_safetensors(folder / "best.safetensors", model.state_dict(), meta)
    return folder


def damaged(tmp_path, good, name, how):
    data = bytearray((good / name).read_bytes())
    data = how(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def flip(at):
    def how(data):
        data[at(data)] ^= 0x10
        return data
    return how


DAMAGE = {
    "empty": (lambda d: b"", "is empty (0 bytes)"),
    "one byte": (lambda d: d[:1], "not a torch checkpoint"),
    "truncated": (lambda d: d[: len(d) // 2], "damaged or truncated"),
    "random": (lambda d: bytearray(os.urandom(len(d))), "not a torch checkpoint"),
    "random after a zip header": (lambda d: d[:4] + os.urandom(4000), "damaged or truncated"),
    "bit flipped in a tensor": (flip(lambda d: len(d) // 2), "does not match the checksum"),
    "bit flipped in the data": (flip(lambda d: d.find(MARK.encode()) + 3), "does not match the checksum"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_is_one_line(kind, tmp_path, good, capsys):
    how, message = DAMAGE[kind]
    path = damaged(tmp_path, good, "last.ckpt", how)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)
    assert cli.main(["eval", "--checkpoint", str(path), "--model", "resnet20"]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_a_flipped_bit_anywhere_is_reported_or_harmless(tmp_path, good):
    """At 97 places across the file: either a CheckpointError, or exactly the saved content (zip padding)."""
    original = load_checkpoint(good / "last.ckpt")
    size = (good / "last.ckpt").stat().st_size
    for at in range(0, size, size // 97):
        path = damaged(tmp_path, good, "last.ckpt", flip(lambda d: at))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            continue
        assert cnnzoo.files.content_digest(loaded) == cnnzoo.files.content_digest(original), at


ST_DAMAGE = {
    "empty": (lambda d: b"", "fewer than the 8-byte header length"),
    "truncated in the header": (lambda d: d[:40], "header claims"),
    "truncated in the data": (lambda d: d[: len(d) - 100], "outside the"),
    "random": (lambda d: bytearray(os.urandom(len(d))), "not a valid safetensors file"),
    "bit flipped in a tensor": (flip(lambda d: len(d) - 1000), "do not match the checksum"),
}


@pytest.mark.parametrize("kind", ST_DAMAGE)
def test_damaged_safetensors_is_one_line(kind, tmp_path, good, capsys):
    how, message = ST_DAMAGE[kind]
    path = damaged(tmp_path, good, "best.safetensors", how)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_file(path)
    assert cli.main(["eval", "--checkpoint", str(path), "--model", "resnet20"]) == 2
    assert message in one_line(capsys.readouterr().err)


def crafted(path, header: dict, data: bytes = b"\0" * 16):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


CRAFTED = {
    "huge shape": ({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}},
                   "declares F32 [1099511627776, 1099511627776]"),
    "shape overflowing 64 bits": ({"w": {"dtype": "F64", "shape": [2**62, 2**62, 2**62], "data_offsets": [0, 16]}},
                                  "declares F64"),
    "wrong dtype": ({"w": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}}, "has dtype 'F33'"),
    "negative size": ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, "not a list of sizes"),
    "out of range": ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [2**60, 2**60 + 16]}}, "outside the"),
    "overlapping": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, "overlap"),
    "offsets backwards": ({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, "outside the"),
    "metadata not strings": ({"__metadata__": {"a": 1}}, "__metadata__ is not a mapping of strings"),
    "not an object": ([1, 2], "header is not a JSON object"),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_safetensors_header_is_refused_before_any_allocation(kind, tmp_path, monkeypatch, capsys):
    header, message = CRAFTED[kind]
    path = crafted(tmp_path / "crafted.safetensors", header)

    def never(*a, **k):
        raise AssertionError("the safetensors library was reached with an invalid header")

    monkeypatch.setattr("safetensors.safe_open", never)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_file(path)
    assert cli.main(["eval", "--checkpoint", str(path), "--model", "resnet20"]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_header_not_json_and_header_longer_than_the_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"{nope" + b"\0" * 8)
    with pytest.raises(CheckpointError, match="header is not JSON"):
        load_file(path)
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        load_file(path)


def test_hugging_face_safetensors_loads_with_a_model_name_and_else_says_what_is_missing(tmp_path, capsys):
    model = create_model("resnet20", num_classes=10)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="does not say which model it holds; give --model NAME"):
        load_trained(path)
    net, meta = load_trained(path, model="resnet20")
    assert meta["format"] == "pt"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values()))


def test_another_architectures_safetensors_lists_its_keys(tmp_path, capsys):
    path = tmp_path / "bert.safetensors"
    save_file({"encoder.layer.0.attention.self.query.weight": torch.zeros(4, 4)}, str(path),
              metadata={"format": "pt"})
    assert cli.main(["eval", "--checkpoint", str(path), "--model", "resnet20"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "missing keys" in line and "unexpected keys (1): encoder.layer.0.attention.self.query.weight" in line


def test_integer_tensors_where_the_model_has_floats_are_named(tmp_path, capsys):
    state = {k: v.contiguous() for k, v in create_model("resnet20", num_classes=10).state_dict().items()}
    state["conv1.weight"] = state["conv1.weight"].to(torch.int32)
    path = tmp_path / "ints.safetensors"
    save_file(state, str(path))
    assert cli.main(["eval", "--checkpoint", str(path), "--model", "resnet20"]) == 2
    assert "dtype mismatches (1): conv1.weight: file torch.int32 vs model torch.float32" in \
        one_line(capsys.readouterr().err)


def test_a_torch_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_file(path)
    torch.save({"weights": torch.zeros(1), "step": 3}, path)
    with pytest.raises(CheckpointError, match="not a state dict: 1 entries are not tensors"):
        load_file(path)


def test_load_file_reads_every_kind_of_weight_file(tmp_path, good):
    model = create_model("resnet20", num_classes=3, in_chans=1)
    want = model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in want.items()}}, tmp_path / "ddp.pth")
    torch.save(want, tmp_path / "plain.pt")
    for path in (good / "last.ckpt", good, good / "best.safetensors", tmp_path / "ddp.pth", tmp_path / "plain.pt"):
        state, meta = load_file(path)
        assert sorted(state) == sorted(want), path
    assert load_file(good)[1]["model"] == "resnet20" and load_file(good / "best.safetensors")[1]["num_classes"] == 3


def test_old_loaders_are_deprecated_aliases(tmp_path, good):
    from cnnzoo.deploy import load_checkpoint as deploy_load
    from cnnzoo.engine import read_weights

    with pytest.warns(DeprecationWarning, match="load_file"):
        state, _ = read_weights(good / "best.safetensors")
    with pytest.warns(DeprecationWarning, match="load_file"):
        deploy_load(create_model("resnet20", num_classes=3, in_chans=1), good / "best.safetensors")
    assert sorted(state) == sorted(load_file(good / "best.safetensors")[0])
