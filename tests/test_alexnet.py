import copy

import pytest
import torch
import torch.nn.functional as F

import cnnzoo
from cnnzoo.layers import LocalResponseNorm
from conftest import require_peer
from peer_models import assert_same_logits


@pytest.fixture  # per test: mutation testing maps a constructor to the tests that run it
def paper():
    torch.manual_seed(0)
    return cnnzoo.create_model("alexnet").eval()


def lrn_by_the_formula(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """Section 3.3 written out: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta."""
    N = a.shape[1]
    b = torch.empty_like(a)
    for i in range(N):
        window = a[:, max(0, i - n // 2): min(N - 1, i + n // 2) + 1]
        b[:, i] = a[:, i] / (k + alpha * (window**2).sum(1)) ** beta
    return b


def test_lrn_uses_the_papers_sum_convention():
    torch.manual_seed(0)
    a = torch.randn(2, 12, 3, 3) * 30  # large activations, so the normalisation term matters
    ours = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert torch.allclose(ours, lrn_by_the_formula(a), rtol=1e-5, atol=1e-6)
    # torch (and Caffe) divide alpha by n: the same printed alpha means something else there ...
    assert not torch.allclose(ours, F.local_response_norm(a, 5, alpha=1e-4, beta=0.75, k=2.0), rtol=1e-3)
    # ... and n times alpha there is ours.
    assert torch.allclose(ours, F.local_response_norm(a, 5, alpha=5e-4, beta=0.75, k=2.0), rtol=1e-5, atol=1e-6)


def test_paper_alexnet_shapes_at_227(paper):
    model = paper
    assert model.default_cfg.input_size == (3, 227, 227)
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        assert model.conv1(x).shape == (1, 96, 55, 55)
        # no padding at 227 (a pad of 1 also gives 55x55, but other values)
        assert torch.allclose(model.conv1(x), F.conv2d(x, model.conv1.weight, model.conv1.bias, stride=4))
        assert model.forward_features(x).shape == (1, 256, 6, 6)
        assert model(x).shape == (1, 1000)
    assert sum(isinstance(m, LocalResponseNorm) for m in model.modules()) == 2


def test_paper_alexnet_splits_conv2_conv4_conv5_over_two_gpus(paper):
    model = paper
    assert [m.weight.shape[1] for m in (model.conv1, model.conv2, model.conv3, model.conv4, model.conv5)] == [
        3, 48, 256, 192, 192]
    # a kernel of the second "GPU" does not see the first GPU's maps
    x = torch.randn(1, 384, 13, 13)
    y = x.clone()
    y[:, :192] += 1.0
    with torch.no_grad():
        out_x, out_y = model.conv4(x), model.conv4(y)
    assert not torch.allclose(out_x[:, :192], out_y[:, :192])
    assert torch.equal(out_x[:, 192:], out_y[:, 192:])


def test_paper_alexnet_init(paper):
    model = paper
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        assert torch.all(getattr(model, name).bias == 1)
    for name in ("conv1", "conv3", "fc8"):
        assert torch.all(getattr(model, name).bias == 0)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        assert abs(getattr(model, name).weight.std().item() - 0.01) < 1e-3, name
    assert abs(model.fc6.weight.std().item() - 0.01) < 1e-4
    default = cnnzoo.create_model("alexnet", init="default")  # PyTorch's: no biases of 1
    assert not torch.all(default.conv2.bias == 1) and abs(default.fc6.weight.std().item() - 0.01) > 1e-3


def test_direct_construction_is_the_paper_network():
    from cnnzoo.models.alexnet import AlexNet

    model = AlexNet()
    assert model.conv1.in_channels == 3 and model.fc8.out_features == 1000
    assert torch.all(model.conv2.bias == 1)  # the paper's init by default
    split = AlexNet(groups=(3, 1, 2, 1, 1))  # every conv takes its group count
    assert [m.groups for m in (split.conv1, split.conv2, split.conv3, split.conv4, split.conv5)] == [3, 1, 2, 1, 1]


def test_dropout_acts_on_fc_outputs_in_the_paper_and_on_inputs_in_torchvision(paper):
    torch.manual_seed(0)
    feats = torch.randn(1, 256, 6, 6)
    paper = copy.deepcopy(paper).train()
    paper.drop6.p = paper.drop7.p = 1.0  # every dropped unit is zero
    assert not paper.forward_head(feats, pre_logits=True).any()  # fc7's outputs are dropped
    tv = cnnzoo.create_model("alexnet_tv", drop_rate=1.0).train()
    # fc7's input is dropped, so fc7 sees zeros and its ReLU output is relu(bias)
    assert torch.equal(tv.forward_head(feats, pre_logits=True)[0], F.relu(tv.fc7.bias.detach()))


def test_torchvision_weights_give_same_logits():
    torchvision = require_peer("torchvision")
    torch.manual_seed(0)
    assert cnnzoo.min_input_size("alexnet_tv") == 63
    assert_same_logits("alexnet_tv", torchvision.models.alexnet(), size=63)


def test_paper_alexnet_rejects_other_input_sizes_clearly():
    with torch.device("meta"):
        model = cnnzoo.create_model("alexnet")
        with pytest.raises(ValueError, match=r"^fc6 needs 6x6 pool5 maps, got 8x8: feed 227x227 images \(the paper's "
                                             r"network\), or build with pool_to=6 \(as alexnet_tv\) for other sizes$"):
            model(torch.zeros(1, 3, 300, 300))
