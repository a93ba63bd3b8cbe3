"""`pretrained=True`: the weights table, the caches it shares with torchvision / timm / pretrainedmodels, offline use.

Weights cannot be downloaded here, so each test builds the cache itself in a temporary TORCH_HOME (and Hugging
Face cache): a peer model with random weights saved under the file name its release has. A tag whose model is
not registered yet (a family still being written) is skipped with that reason.
"""

import warnings

import pytest
import torch

import cnnzoo
from cnnzoo import hub
from cnnzoo.cli import main
from cnnzoo.weights import _converter, _fit_to_model, adapt_input_conv, check_state_dict
from conftest import assert_warned_at, require_peer, write_image
from peer_models import cache_weights, randomize_batchnorm, torchvision_weights, weights_peer

ALL_TAGS = hub.list_pretrained()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch.hub and Hugging Face caches; offline (the session's CNNZOO_OFFLINE=1)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    try:
        import huggingface_hub.constants
    except ImportError:
        pass
    else:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


# ---- the table: every tag against its publisher's own metadata, and its layout against our model -----------------

@pytest.mark.parametrize("name", ALL_TAGS)
def test_table_matches_the_publishers_metadata(name):
    cfg = hub.get_pretrained_cfg(name)
    assert cfg.num_classes == 1000 and cfg.label_set == "imagenet-1k" and cfg.crop_mode == "center"
    if cfg.source == "torchvision":
        _, weights = torchvision_weights()[cfg.url]  # a KeyError: a URL torchvision does not publish
        metrics = weights.meta["_metrics"]["ImageNet-1K"]
        assert (cfg.top1, cfg.top5) == (metrics["acc@1"], metrics["acc@5"])
        preset = weights.transforms()
        assert cfg.input_size == (3, *preset.crop_size * 2)
        assert cfg.crop_pct == round(preset.crop_size[0] / preset.resize_size[0], 4)
        assert cfg.interpolation == preset.interpolation.value
        assert cfg.license == "bsd-3-clause" and not cfg.hf_hub_id
    elif cfg.source == "timm":
        timm = require_peer("timm")
        theirs = timm.models.get_pretrained_cfg(cfg.hf_hub_id.split("/")[1]).to_dict()
        for key in ("input_size", "crop_pct", "interpolation", "mean", "std", "license"):
            assert getattr(cfg, key) == theirs[key], key
        assert cfg.url == (theirs.get("url") or "")
    else:
        polynet = require_peer("pretrainedmodels.models.polynet")
        theirs = polynet.pretrained_settings["polynet"]["imagenet"]
        assert (cfg.url, list(cfg.input_size), list(cfg.mean), list(cfg.std)) == (
            theirs["url"], theirs["input_size"], theirs["mean"], theirs["std"])
    assert (cfg.hf_hub_id and cfg.file.endswith(".safetensors")) or torch.hub.HASH_REGEX.search(cfg.file)


@pytest.mark.parametrize("name", ALL_TAGS)
def test_file_layout_fits_our_model(name):
    """The publisher's state dict, converted, fits our model key by key and shape by shape (on the meta device)."""
    cfg = hub.get_pretrained_cfg(name)
    assert cfg.architecture in cnnzoo.list_models()
    with torch.device("meta"):
        peer, ours = weights_peer(cfg), cnnzoo.create_model(cfg.architecture)
    state_dict = _converter(ours, cfg.source)(dict(peer.state_dict()))
    kept = set(state_dict)
    assert _fit_to_model(ours, state_dict, 3, 1000) == []  # nothing adapted at 3 channels, 1000 classes
    assert all(key.split(".")[0].lower().startswith("aux") for key in kept - set(state_dict))  # aux heads only
    check_state_dict(ours, state_dict)


# ---- loading: our logits are the peer's, offline, from the cache the peer library uses --------------------------

FULL = ["resnet18.tv_in1k", "googlenet_bn.tv_in1k", "squeezenet1_1.tv_in1k", "efficientnet_b0.tv_in1k",
        "xception.tf_in1k", "mobilenet_v1_100_relu6.ra4_e3600_r224_in1k"]


@pytest.mark.parametrize("name", FULL)
def test_pretrained_gives_the_peers_logits_offline(caches, name):
    cfg = hub.get_pretrained_cfg(name)
    assert cfg.architecture in cnnzoo.list_models()
    torch.manual_seed(0)
    peer = randomize_batchnorm(weights_peer(cfg), calibrate=torch.randn(4, 3, 64, 64)).eval()
    cache_weights(cfg, peer.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to adapt
        ours = cnnzoo.create_model(name.partition(".")[0], pretrained=True).eval()
    assert ours.pretrained_cfg == cfg.to_dict()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = peer(x)
        assert expected.std() > 1e-3 and (expected[0] - expected[1]).abs().max() > 1e-3  # varies: a wrong tensor shows
        assert (ours(x) - expected).abs().max() <= 1e-4


def test_hub_weights_come_from_the_hugging_face_cache(caches):
    cfg = hub.get_pretrained_cfg("xception")
    assert cfg.hf_hub_id == "timm/legacy_xception.tf_in1k"
    timm = require_peer("timm")
    torch.manual_seed(0)
    peer = randomize_batchnorm(timm.create_model("legacy_xception"), calibrate=torch.randn(4, 3, 64, 64)).eval()
    cache_weights(cfg, peer.state_dict())
    ours = cnnzoo.create_model("xception.tf_in1k", pretrained=True).eval()
    assert not hub.checkpoints_dir().exists()  # read where it is, not copied into torch.hub's folder
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max() <= 1e-4


def test_torchvision_reads_the_same_file_so_nothing_is_stored_twice(caches):
    torchvision = require_peer("torchvision")
    state = torchvision.models.resnet18().state_dict()
    cfg = hub.get_pretrained_cfg("resnet18")
    cache_weights(cfg, state)
    ours = cnnzoo.create_model("resnet18", pretrained=True)
    theirs = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)  # offline: cached
    assert torch.equal(theirs["conv1.weight"], state["conv1.weight"])
    assert torch.equal(ours.conv1.weight, state["conv1.weight"])
    assert [p.name for p in hub.checkpoints_dir().iterdir()] == ["resnet18-f37072fd.pth"]


def test_no_file_offline_is_one_line_naming_file_and_folder(caches, capsys):
    folder = caches / "torch" / "hub" / "checkpoints"
    with pytest.raises(hub.WeightsNotFoundError) as e:
        cnnzoo.create_model("resnet18", pretrained=True)
    message = str(e.value)
    assert "\n" not in message and "resnet18-f37072fd.pth" in message and f"{folder}/" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    with pytest.raises(hub.WeightsNotFoundError, match=r"inception_resnet_v2\.tf_in1k\.safetensors from "
                                                       r"https://huggingface\.co/timm/inception_resnet_v2\.tf_in1k"):
        hub.weight_file(hub.get_pretrained_cfg("inception_resnet_v2"))
    assert main(["eval", "--pretrained", "--model", "resnet18", "--data", str(caches)]) == 2  # a missing file
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet18-f37072fd.pth" in err and "Traceback" not in err


def test_download_goes_through_torch_hub_with_the_hash_prefix(caches, monkeypatch):
    torchvision = require_peer("torchvision")
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(torchvision.models.resnet18().state_dict(), dst)

    monkeypatch.setenv("CNNZOO_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    cnnzoo.create_model("resnet18", pretrained=True)
    cnnzoo.create_model("resnet18", pretrained=True)  # the second time from the cache
    assert calls == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")]


def test_failed_download_is_one_line(caches, monkeypatch):
    def download(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError('invalid hash value (expected "f37072fd", got "00000000...")')

    monkeypatch.setenv("CNNZOO_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    with pytest.raises(hub.WeightsNotFoundError, match=r"download failed \(RuntimeError: invalid hash value.*put "
                                                       r"resnet18-f37072fd.pth from"):
        cnnzoo.create_model("resnet18", pretrained=True)


# ---- tags, and other classes or channels than the weights' ---------------------------------------------------------

def test_tags():
    assert hub.pretrained_tags("resnet50") == ["tv2_in1k", "tv_in1k"]  # torchvision's DEFAULT first
    assert hub.get_pretrained_cfg("resnet50", "tv_in1k").file == "resnet50-0676ba61.pth"
    assert hub.get_pretrained_cfg("resnet50.tv_in1k").file == "resnet50-0676ba61.pth"
    assert hub.pretrained_tags("resnet20") == []
    with pytest.raises(ValueError, match=r"resnet50 has no weights tagged 'in22k'; its tags: tv2_in1k, tv_in1k"):
        cnnzoo.create_model("resnet50", pretrained="in22k")
    with pytest.raises(ValueError, match="resnet20 has no published weights"):
        cnnzoo.create_model("resnet20", pretrained=True)


@pytest.fixture
def resnet18_file(caches):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = randomize_batchnorm(torchvision.models.resnet18()).eval()
    cache_weights(hub.get_pretrained_cfg("resnet18"), peer.state_dict())
    return peer


def test_tag_in_the_name_or_as_the_argument(resnet18_file):
    for model in (cnnzoo.create_model("resnet18.tv_in1k", pretrained=True),
                  cnnzoo.create_model("resnet18", pretrained="tv_in1k")):
        assert torch.equal(model.fc.weight, resnet18_file.fc.weight)
    assert not torch.equal(cnnzoo.create_model("resnet18.tv_in1k").fc.weight, resnet18_file.fc.weight)  # timm's way


def test_other_classes_and_channels_adapt_head_and_first_conv_and_say_so(resnet18_file):
    w = resnet18_file.conv1.weight.detach()
    with pytest.warns(UserWarning, match=r"conv1.weight adapted from 3 input channels; fc.weight, fc.bias freshly") \
            as caught:
        grey = cnnzoo.create_model("resnet18", pretrained=True, in_chans=1, num_classes=10)
    assert_warned_at(caught[0], __file__)  # the user's create_model line, not cnnzoo's
    assert torch.allclose(grey.conv1.weight, w.sum(1, keepdim=True))
    assert grey.fc.out_features == 10 and torch.equal(grey.layer4[1].conv2.weight, resnet18_file.layer4[1].conv2.weight)
    with pytest.warns(UserWarning, match="adapted from 3 input channels"):
        five = cnnzoo.create_model("resnet18", pretrained=True, in_chans=5)
    assert torch.allclose(five.conv1.weight, torch.cat([w, w[:, :2]], 1) * 3 / 5)
    assert torch.equal(five.fc.weight, resnet18_file.fc.weight)
    assert cnnzoo.data_config(grey)["input_size"] == (1, 224, 224)


def test_adapt_input_conv_keeps_the_response_to_a_grey_image():
    conv2d = torch.nn.functional.conv2d
    w = torch.randn(8, 3, 3, 3)
    x = torch.rand(1, 1, 9, 9)
    expected = conv2d(x.expand(1, 3, 9, 9), w)  # the colour weights on R = G = B
    assert torch.allclose(conv2d(x, adapt_input_conv(1, w)), expected, atol=1e-5)
    assert torch.allclose(conv2d(x.expand(1, 6, 9, 9), adapt_input_conv(6, w)), expected, atol=1e-5)
    assert adapt_input_conv(3, w) is w


# ---- each weight's preprocessing, and eval --pretrained on a validation-only folder -----------------------------

def test_data_config_is_the_files_own():
    assert cnnzoo.data_config("xception") == dict(input_size=(3, 299, 299), interpolation="bicubic",
                                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.8975,
                                                  crop_mode="center")
    assert cnnzoo.data_config("resnet50")["crop_pct"] == 0.9655  # tv2_in1k: 232 -> 224
    assert cnnzoo.data_config("resnet50.tv_in1k")["crop_pct"] == 0.875
    assert cnnzoo.data_config("resnet20")["crop_pct"] == 1.0  # no weights: CIFAR's whole 32 x 32 image


def test_transform_resizes_crops_and_normalises():
    from PIL import Image

    transform = cnnzoo.create_transform(cnnzoo.data_config("inception_v3.tv_in1k"))
    resize = transform.transforms[0]
    assert resize.size == [342] and resize.interpolation.value == "bilinear"  # torchvision's 342 for 299
    out = transform(Image.new("RGB", (500, 400), (255, 0, 128)))
    assert out.shape == (3, 299, 299)
    assert torch.allclose(out[:, 150, 150], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


def _val_folder(root, classes=("3", "7", "999"), per_class=2):
    for c in classes:
        for i in range(per_class):
            write_image(root / "val" / c / f"{i}.jpg", size=(72, 60), seed=int(c) * 10 + i)
    return root


def test_eval_pretrained_on_a_validation_only_folder(resnet18_file, tmp_path, capsys):
    data = _val_folder(tmp_path / "imagenet")  # val/ only, no train/
    assert main(["eval", "--pretrained", "--model", "resnet18", "--data", f"folder:{data}", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # what the command measured, recomputed by hand with the weights' own preprocessing
    transform = cnnzoo.create_transform(cnnzoo.data_config("resnet18"))
    from PIL import Image

    images, labels = [], []
    for c in ("3", "7", "999"):
        for i in range(2):
            images.append(transform(Image.open(data / "val" / c / f"{i}.jpg").convert("RGB")))
            labels.append(int(c))
    with torch.no_grad():
        top5 = resnet18_file(torch.stack(images)).topk(5).indices
    labels = torch.tensor(labels)
    top1 = 100 * (top5[:, 0] == labels).float().mean().item()
    top5 = 100 * (top5 == labels[:, None]).any(1).float().mean().item()
    assert lines[0].startswith("resnet18.tv_in1k on ") and "6 images, 224 crop (crop_pct 0.875, bilinear" in lines[0]
    assert lines[2].split() == ["top1", f"{top1:.2f}", "69.76"] and lines[3].split() == ["top5", f"{top5:.2f}", "89.08"]
    assert lines[-1] == f"top1={top1:.2f} top5={top5:.2f}"


def test_eval_pretrained_rejects_unusable_folders(resnet18_file, tmp_path, capsys):
    for c in ("cat", "dog"):
        write_image(tmp_path / "pets" / c / "0.jpg")
    assert main(["eval", "--pretrained", "--model", "resnet18", "--data", str(tmp_path / "pets")]) == 2
    err = capsys.readouterr().err
    assert "2 class folders, the weights 1000 classes" in err and err.count("\n") == 1
    assert main(["eval", "--pretrained", "--model", "resnet18"]) == 2
    assert "give --model NAME and --data DIR" in capsys.readouterr().err


def test_list_and_info_show_tags_source_licence_and_accuracy(capsys):
    assert main(["list", "--pretrained", "resnet5*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["resnet50.tv2_in1k", "torchvision", "bsd-3-clause", "224", "80.86", "/", "95.43"]
    assert [line.split()[0] for line in out[1:]] == ["resnet50.tv2_in1k", "resnet50.tv_in1k"]
    assert main(["info", "xception"]) == 0
    assert ("xception.tf_in1k (default): timm, apache-2.0; top-1 79.058%, top-5 94.396% at 299 (crop 0.8975, bicubic)"
            in capsys.readouterr().out)
