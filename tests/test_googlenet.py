import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.analysis import count_params
from cnnzoo.cli import main
from cnnzoo.models.googlenet import TABLE_1, GoogLeNet, GoogLeNetOutputs, Inception, InceptionAux, InceptionNaive
from conftest import require_peer
from peer_models import randomize_batchnorm


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def conv_params(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_paper_layout_has_biases_no_bn_true_5x5_and_lrn_in_the_stem():
    model = meta_model("googlenet")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 9 * 6  # stem, then six convolutions per Inception module
    assert all(c.bias is not None for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(getattr(model, f"inception{n}").branch3[1].conv.kernel_size == (5, 5) for n in TABLE_1)
    for lrn in (model.lrn1, model.lrn2):
        assert isinstance(lrn, nn.LocalResponseNorm) and (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert model.dropout.p == 0.4


def test_torchvision_layout_has_bn_and_3x3_in_the_5x5_column():
    model = meta_model("googlenet_bn")
    assert all(getattr(model, f"inception{n}").branch3[1].conv.kernel_size == (3, 3) for n in TABLE_1)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())


def test_aux_heads_have_the_paper_counts():
    model = meta_model("googlenet", aux_logits=True)
    assert count_params(model.aux1) == 3_188_840  # on 4a, 512 channels
    assert count_params(model.aux2) == 3_190_888  # on 4d, 528 channels
    assert count_params(model) == 6_998_552 + 3_188_840 + 3_190_888


def test_aux_heads_run_in_training_only_and_every_parameter_learns():
    torch.manual_seed(0)
    model = cnnzoo.create_model("googlenet", aux_logits=True, num_classes=5)
    calls = []
    for head in (model.aux1, model.aux2):
        head.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 3, 224, 224)

    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs) and len(calls) == 2
    assert all(o.shape == (1, 5) for o in out)
    target = torch.tensor([3])
    loss = sum(w * nn.functional.cross_entropy(o, target) for w, o in zip((1.0, 0.3, 0.3), out))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 5) and len(calls) == 2


def test_paper_aux_pool_needs_224_and_says_so():
    model = cnnzoo.create_model("googlenet", aux_logits=True).train()
    message = r"need a 4x4 map after their pool, got \(2, 2\): the paper's 5x5/3 pool expects a 224x224 input"
    with pytest.raises(ValueError, match=message):
        model(torch.randn(1, 3, 96, 96))


def test_transform_input_needs_rgb():
    with pytest.raises(ValueError, match="transform_input .* needs in_chans=3, got 1"):
        cnnzoo.create_model("googlenet_bn", in_chans=1, transform_input=True)


def _randomised_peer(**kwargs):
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    # PyTorch's default init (not torchvision's std 0.01): larger logits, so a wrong layer shows more.
    peer = torchvision.models.googlenet(init_weights=False, **kwargs)
    return randomize_batchnorm(peer, calibrate=torch.randn(4, 3, 64, 64))


def _loaded(peer, **kwargs):
    """googlenet_bn holding ``peer``'s weights (built on meta: every tensor comes from the peer)."""
    ours = meta_model("googlenet_bn", **kwargs).to_empty(device="cpu")
    return cnnzoo.import_weights(ours, peer.state_dict(), source="torchvision")


@pytest.mark.parametrize("aux_logits, transform_input", [(False, False), (True, False), (False, True)])
def test_torchvision_weights_give_same_logits(aux_logits, transform_input):
    peer = _randomised_peer(aux_logits=aux_logits, transform_input=transform_input).eval()
    ours = _loaded(peer, aux_logits=aux_logits, transform_input=transform_input).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max() <= 1e-4


def test_torchvision_aux_logits_agree_in_training_mode():
    peer = _randomised_peer(aux_logits=True).train()
    ours = _loaded(peer, aux_logits=True).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(1)  # same dropout masks: both draw them in the same order (aux1, aux2, main)
        theirs = peer(x)
        torch.manual_seed(1)
        mine = ours(x)
    assert (mine.logits - theirs.logits).abs().max() <= 1e-4
    assert (mine.aux1 - theirs.aux_logits1).abs().max() <= 1e-4
    assert (mine.aux2 - theirs.aux_logits2).abs().max() <= 1e-4
    assert mine.aux1.abs().max() > 0 and (mine.aux1 - mine.aux2).abs().max() > 0.01  # not trivially equal


def test_naive_modules_drop_the_reductions_and_widen():
    """Fig. 2(a) against 2(b) for inception (3a), counted by hand from Table 1."""
    c_in = 192
    row = TABLE_1["3a"]
    reduced = (conv_params(c_in, row.ch1x1, 1) + conv_params(c_in, row.ch3x3red, 1)
               + conv_params(row.ch3x3red, row.ch3x3, 3) + conv_params(c_in, row.ch5x5red, 1)
               + conv_params(row.ch5x5red, row.ch5x5, 5) + conv_params(c_in, row.pool_proj, 1))
    naive = conv_params(c_in, row.ch1x1, 1) + conv_params(c_in, row.ch3x3, 3) + conv_params(c_in, row.ch5x5, 5)
    model, naive_model = meta_model("googlenet"), meta_model("googlenet", inception="naive")
    assert count_params(model.inception3a) == reduced == 163_696
    assert count_params(naive_model.inception3a) == naive == 387_296
    # The pooling column passes its input through, so every naive module widens the next one's input.
    assert naive_model.inception3a.out_channels == c_in + row.ch1x1 + row.ch3x3 + row.ch5x5
    assert naive_model.num_features == 192 + sum(r.ch1x1 + r.ch3x3 + r.ch5x5 for r in TABLE_1.values())


def test_cli_compare_prints_what_the_reductions_save(capsys):
    assert main(["info", "googlenet", "--compare", "googlenet_naive"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.strip().startswith("inception3a"))
    assert row[1:3] == ["163,696", "387,296"]
    naive = count_params(meta_model("googlenet_naive"))
    total = next(line.split() for line in lines if line.strip().startswith("total"))
    assert total[1:3] == ["6,998,552", f"{naive:,}"]
    assert f"googlenet saves {naive - 6_998_552:,} params" in "\n".join(lines)
    macs_line = next(line for line in lines if "G MACs" in line)
    assert macs_line.split()[:2] == ["googlenet", "saves"]


def test_cli_compare_with_unknown_model_fails_before_printing(capsys):
    assert main(["info", "googlenet", "--compare", "googlenet_naiv"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown model 'googlenet_naiv'; closest: googlenet_naive" in err


def test_transform_input_turns_imagenet_normalised_input_into_minus_one_to_one():
    """torchvision's weights saw (pixel - 0.5) / 0.5; with transform_input the model takes ImageNet-normalised input."""
    from cnnzoo.registry import IMAGENET_MEAN, IMAGENET_STD

    pixel = torch.rand(2, 3, 5, 5)
    normalised = (pixel - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    model = GoogLeNet("torchvision", transform_input=True)
    torch.testing.assert_close(model._transform_input(normalised), (pixel - 0.5) / 0.5)
    assert GoogLeNet("torchvision")._transform_input(normalised) is normalised
    bf16 = model._transform_input(normalised.bfloat16())
    assert bf16.dtype == torch.bfloat16  # the constants follow the input's dtype: no silent promotion to fp32


def test_direct_construction_defaults_are_the_papers():
    """``GoogLeNet()`` and the module classes on their own default to the paper's settings."""
    with torch.device("meta"):
        model, aux = GoogLeNet(), InceptionAux(512, 10)
        module, naive = Inception(192, *TABLE_1["3a"]), InceptionNaive(192, 64, 128, 32)
    assert count_params(model) == 6_998_552 and model.fc.out_features == 1000 and model.conv1.conv.in_channels == 3
    assert isinstance(model.lrn1, nn.LocalResponseNorm)
    assert module.branch3[1].conv.kernel_size == (5, 5) and naive.branch3.conv.kernel_size == (5, 5)
    assert isinstance(aux.pool, nn.AvgPool2d) and (aux.pool.kernel_size, aux.pool.stride) == (5, 3)
    assert aux.dropout.p == 0.7


def test_pools_and_dropouts_follow_the_layout_and_the_arguments():
    paper, tv = meta_model("googlenet", aux_logits=True), meta_model("googlenet_bn", aux_logits=True)
    assert paper.maxpool4.kernel_size == 3 and tv.maxpool4.kernel_size == 2  # before inception 5a
    assert (paper.aux1.pool.kernel_size, paper.aux1.pool.stride) == (5, 3)  # Section 5: 5x5 average pool, stride 3
    assert isinstance(tv.aux1.pool, nn.AdaptiveAvgPool2d)
    assert (paper.dropout.p, tv.dropout.p, paper.aux2.dropout.p) == (0.4, 0.2, 0.7)
    chosen = meta_model("googlenet", aux_logits=True, dropout=0.1, dropout_aux=0.5)
    assert (chosen.dropout.p, chosen.aux1.dropout.p, chosen.aux2.dropout.p) == (0.1, 0.5, 0.5)
    naive_tv = meta_model("googlenet_bn", inception="naive")
    assert all(getattr(naive_tv, f"inception{n}").branch3.conv.kernel_size == (3, 3) for n in TABLE_1)


def test_paper_init_is_caffes_xavier_with_0_2_conv_biases_and_torchvisions_is_a_small_normal():
    torch.manual_seed(0)
    paper, tv = GoogLeNet("paper"), GoogLeNet("torchvision")
    for m in paper.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = (3 / m.weight[0].numel()) ** 0.5  # uniform, variance 1 / fan_in
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
            assert torch.all(m.bias == (0.2 if isinstance(m, nn.Conv2d) else 0.0))
    weights = torch.cat([m.weight.flatten() for m in tv.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert weights.std().item() == pytest.approx(0.01, rel=0.01)
    assert all(torch.all(m.bias == 0) for m in tv.modules() if isinstance(m, nn.Linear))


def test_unknown_layout_or_module_kind_is_named():
    with pytest.raises(ValueError, match="unknown GoogLeNet layout 'caffe': use 'paper' or 'torchvision'"):
        GoogLeNet("caffe")
    with pytest.raises(ValueError, match=r"unknown inception 'wide': use 'reduction' \(Fig. 2b\) or 'naive'"):
        GoogLeNet(inception="wide")
