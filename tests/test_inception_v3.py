import csv

import pytest
import torch
import torch.nn.functional as F
from peer_models import assert_same_logits, randomize_batchnorm

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.cli import main
from cnnzoo.engine.trainer import classification_loss
from cnnzoo.analysis.complexity import meta_model as analysis_meta_model
from cnnzoo.models.inception_v3 import InceptionA, InceptionC, InceptionE, InceptionV3Outputs
from conftest import (assert_built_as_registered, assert_every_conv_built_by_conv_block, feature_shapes, meta_model,
                      require_peer)


def test_release_layout_3_4_2_modules_and_the_grids_of_table_1():
    model = meta_model("inception_v3")
    kinds = [type(m) for m in model.children()]
    assert (kinds.count(InceptionA), kinds.count(InceptionC), kinds.count(InceptionE)) == (3, 4, 2)
    shapes, info = feature_shapes("inception_v3", 299)
    assert shapes == [(64, 147, 147), (192, 71, 71), (288, 35, 35), (768, 17, 17), (2048, 8, 8)]
    assert [(i["num_chs"], i["reduction"]) for i in info] == [(64, 2), (192, 4), (288, 8), (768, 16), (2048, 32)]
    assert model.num_features == 2048


def test_aux_head_counts_and_macs():
    assert count_params(meta_model("inception_v3", aux_logits=True)) == 27_161_264
    assert count_params(meta_model("inception_v3", aux_logits=True).AuxLogits) == 27_161_264 - 23_834_568
    # The aux head runs in training only, so the eval-mode MACs are the main network's: 5.713 G at 299.
    assert count_macs(meta_model("inception_v3", aux_logits=True)) == count_macs(meta_model("inception_v3"))
    assert round(count_macs(meta_model("inception_v3")) / 1e9, 3) == 5.713


def test_aux_head_runs_in_training_only_and_its_loss_is_added():
    torch.manual_seed(0)
    model = cnnzoo.create_model("inception_v3", aux_logits=True, num_classes=5)
    x = torch.randn(2, 3, 299, 299)
    out = model.train()(x)
    assert isinstance(out, InceptionV3Outputs) and out.logits.shape == out.aux.shape == (2, 5)
    labels = torch.tensor([1, 3])
    loss, logits = classification_loss(out, labels, torch.nn.CrossEntropyLoss(), aux_weight=0.4)
    expected = F.cross_entropy(out.logits, labels) + 0.4 * F.cross_entropy(out.aux, labels)
    assert logits is out.logits and torch.allclose(loss, expected)
    loss.backward()
    assert model.AuxLogits.fc.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert isinstance(model.eval()(x[:1]), torch.Tensor)


def test_aux_head_says_what_input_it_needs():
    model = analysis_meta_model("inception_v3", aux_logits=True).train()
    message = (r"the auxiliary head needs a 17x17 map or larger \(a 299x299 input\), got \(8, 8\); "
               r"build with aux_logits=False or feed larger images")
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(2, 3, 160, 160, device="meta"))


def test_torchvision_weights_give_same_logits():
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    assert_same_logits("inception_v3", torchvision.models.inception_v3(aux_logits=False, init_weights=False), 75,
                       batch=1)


def test_torchvision_aux_head_gives_same_aux_logits():
    """With the auxiliary head, in training mode (batch statistics; the head has no dropout), at 299."""
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    peer = torchvision.models.inception_v3(aux_logits=True, init_weights=False)
    peer = randomize_batchnorm(peer, calibrate=torch.randn(2, 3, 299, 299)).train()
    ours = meta_model("inception_v3", aux_logits=True).to_empty(device="cpu")
    ours = cnnzoo.import_weights(ours, peer.state_dict(), source="torchvision").train()
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        theirs, mine = peer(x), ours(x)
    assert theirs.aux_logits.abs().max() > 1e-2
    assert (mine.aux - theirs.aux_logits).abs().max() <= 1e-4


def test_cli_compare_with_xception_shows_both_papers(capsys):
    """The Xception paper measures itself against Inception-v3: about the same size, more compute."""
    assert main(["compare", "xception", "inception_v3", "--no-speed", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    got = {r["model"]: (int(r["params"]), round(float(r["gmacs"]), 3), float(r["top1_err"]), float(r["top5_err"]))
           for r in rows}
    assert got == {"xception": (22_855_952, 8.357, 21.0, 5.5), "inception_v3": (23_834_568, 5.713, 21.2, 5.6)}


def test_inceptionv3_built_directly_is_inception_v3():
    from cnnzoo.models.inception_v3 import InceptionV3

    assert_built_as_registered(InceptionV3, "inception_v3", dropout=0.2)


def test_tf_slim_init_truncated_normals():
    """Truncated at two standard deviations: std 0.1 (0.01 and 0.001 in the auxiliary head), biases zero."""
    from cnnzoo.models.inception_v3 import InceptionV3

    torch.manual_seed(0)
    model = InceptionV3(aux_logits=True)
    aux = {id(model.AuxLogits.conv1.conv.weight): 0.01, id(model.AuxLogits.fc.weight): 0.001}
    main_weights = [m.weight.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                    and id(m.weight) not in aux]
    truncated = 0.8796  # the std of a standard normal truncated at +-2
    for weights, std in [(torch.cat(main_weights), 0.1), (model.AuxLogits.conv1.conv.weight, 0.01),
                         (model.AuxLogits.fc.weight, 0.001)]:
        assert weights.abs().max() <= 2 * std and weights.abs().max() > 1.9 * std
        assert weights.std().item() == pytest.approx(truncated * std, rel=0.03)
    assert not model.fc.bias.any() and not model.AuxLogits.fc.bias.any()


def test_conv_block_reaches_every_convolution():
    from cnnzoo.models.inception_v3 import InceptionV3

    assert_every_conv_built_by_conv_block(InceptionV3, aux_logits=True)
