"""The generic suite: every registered model, the same checks (timm's tests/test_models.py)."""

import pytest
import torch

import cnnzoo
from cnnzoo.analysis import count_macs, count_params, min_input_size

MODELS = cnnzoo.list_models()


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def forward_size(name):
    """A small input the model accepts: forward passes of the big networks stay cheap."""
    return max(min_input_size(name), min(32, cnnzoo.model_cfg(name).img_size))


def outputs(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", MODELS)
def test_params_and_macs_equal_reference(name):
    model = meta_model(name)
    cfg = model.default_cfg
    assert cfg.paper, f"{name} names no paper"
    if cfg.params is not None:
        assert count_params(model) == cfg.params
    if cfg.macs is not None:
        decimals = len(repr(cfg.macs).partition(".")[2])
        assert round(count_macs(model) / 1e9, decimals) == cfg.macs


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_and_head(name):
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, num_classes=7)
    cfg = model.default_cfg
    size = forward_size(name)
    x = torch.randn(2, cfg.in_chans, size, size)

    model.train()
    outs = outputs(model(x))
    assert all(o.shape == (2, 7) for o in outs)
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.sum() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.head_hidden_size)
        assert torch.equal(model.forward_head(feats), model(x))
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)
        assert model.get_classifier().out_features == 3
