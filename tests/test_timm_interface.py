"""timm's model interface, checked over every registered model (our own tests of what timm's
tests/test_models.py asks of a model; benchmarks/timm_suite.py runs timm's file itself).

The checks that need only shapes run on the meta device (no weights, no compute), so
every model is covered in seconds; the checks that compare numbers run on one small
network of each family, at a small input.
"""

import copy
import functools
import math
import os
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo import layers, registry
from cnnzoo.analysis.complexity import meta_model as _build_meta
from cnnzoo.models.base import (
    FeatureInfo, ImageClassifier, Pruned, _checkpointed_forward, feature_take_indices, he_init_,
)

MODELS = cnnzoo.list_models()
# one small network per family, with an input it accepts, for the checks that compare numbers
REAL = {"alexnet_tv": 64, "vgg11_bn": 32, "googlenet_bn": 64, "resnet20": 32, "densenet_bc_100_12": 32,
        "xception": 71, "inception_resnet_v2": 75, "polynet_363_b_poly3": 75, "lenet5": 32}


@functools.lru_cache(maxsize=None)
def _cached_meta(name, **kwargs):
    return _build_meta(name, **kwargs)


def meta_model(name, **kwargs):
    """A fresh copy of ``name`` built once on the meta device (copying is far cheaper than building).

    Under mutation testing every test builds its own: mutmut maps a constructor to the tests that run it."""
    if kwargs.get("features_only") or "MUTANT_UNDER_TEST" in os.environ:
        return _build_meta(name, **kwargs)
    return copy.deepcopy(_cached_meta(name, **kwargs))


def meta_input(model, batch=2):
    return torch.empty(batch, *model.pretrained_cfg["input_size"], device="meta")


@pytest.mark.parametrize("name", MODELS)
def test_cfg_reads_as_a_dict_and_names_real_modules(name):
    model = meta_model(name).eval()
    cfg = model.pretrained_cfg
    assert cfg is model.default_cfg
    assert dict(cfg)["input_size"] == cfg.input_size == cfg["input_size"]
    assert cfg.get("no such key") is None and cfg["architecture"] == name
    keys = model.state_dict().keys()
    assert cfg["first_conv"] + ".weight" in keys and cfg["classifier"] + ".weight" in keys
    assert model.get_classifier().out_features == model.num_classes == cfg["num_classes"]
    features = model.forward_features(meta_input(model))
    assert features.shape[1] == model.num_features and tuple(features.shape[-2:]) == cfg["pool_size"]
    assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)


@pytest.mark.parametrize("name", MODELS)
def test_classifier_and_pool_reset(name):
    model = meta_model(name).eval()
    x = meta_input(model)
    pool_size = model.pretrained_cfg["pool_size"]
    model.reset_classifier(0)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    assert model(x).shape == (2, model.head_hidden_size)  # the whole forward once; then the head on its features
    features = model.forward_features(x)
    model.reset_classifier(0, "")
    assert model.forward_head(features).shape == (2, model.num_features, *pool_size)
    for pool in ("max", "avgmax"):
        model.reset_classifier(5, pool)
        assert model.forward_head(features).shape == (2, 5) and model.num_classes == 5
    with pytest.raises(ValueError, match="needs pooled features"):
        model.reset_classifier(5, "")
    unpooled = meta_model(name, num_classes=0, global_pool="").eval()
    assert unpooled.forward_head(features).shape == (2, unpooled.num_features, *pool_size)


@pytest.mark.parametrize("name", MODELS)
def test_forward_intermediates_follow_feature_info(name):
    model = meta_model(name).eval()
    x = meta_input(model, batch=1)
    info = model.feature_info
    assert len(info) >= 3
    reductions = [f["reduction"] for f in info]
    assert reductions == sorted(reductions)  # timm's FeatureInfo requires it
    assert all(r & (r - 1) == 0 for r in reductions)  # powers of two, timm's convention
    for f in info:
        model.get_submodule(f["module"])  # a real module, the last stage's included
    final, maps = model.forward_intermediates(x)
    assert final.shape == model.forward_features(x).shape
    assert len(maps) == len(info)
    for f, t in zip(info, maps):
        assert t.shape[1] == f["num_chs"]
        assert all(x.shape[d] // f["reduction"] - 3 <= t.shape[d] <= math.ceil(x.shape[d] / f["reduction"]) + 1
                   for d in (2, 3)), (f, t.shape)
    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [t.shape for t in last_two] == [t.shape for t in maps[-2:]]
    early, [first] = model.forward_intermediates(x, indices=[0], stop_early=True)
    assert early.shape == first.shape == maps[0].shape


@pytest.mark.parametrize("name", MODELS)
def test_features_only_gives_the_stages_and_drops_the_rest(name):
    full = meta_model(name)
    features = meta_model(name, features_only=True, out_indices=(0, 1))
    assert features.feature_info.channels() == [f["num_chs"] for f in full.feature_info[:2]]
    assert features.feature_info.reduction() == [f["reduction"] for f in full.feature_info[:2]]
    outs = features(meta_input(full))
    assert [o.shape[1] for o in outs] == features.feature_info.channels()
    assert sum(p.numel() for p in features.parameters()) < sum(p.numel() for p in full.parameters())
    assert any(isinstance(m, Pruned) for m in features.modules())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_symbolic_tracing(name, mode):
    model = meta_model(name, num_classes=3).train(mode == "train")
    tracer = torch.fx.Tracer(autowrap_functions=tuple(layers.get_notrace_functions()))
    graph = torch.fx.GraphModule(model, tracer.trace(model))
    out = graph(meta_input(model))
    assert (out[0] if isinstance(out, tuple) else out).shape == (2, 3)


@pytest.mark.parametrize("name", REAL)
def test_traced_and_hooked_outputs_equal_the_model(name):
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, num_classes=4).eval()
    size = REAL[name] if not model.pretrained_cfg["fixed_input_size"] else model.pretrained_cfg["input_size"][-1]
    x = torch.randn(1, model.pretrained_cfg["input_size"][0], size, size)
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(torch.fx.symbolic_trace(model)(x), logits)
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x)) and torch.equal(maps[-1], final)
        assert torch.equal(model.forward_intermediates(x, indices=[1], intermediates_only=True)[0], maps[1])
        extractor = cnnzoo.create_model(name, features_only=True)
        extractor.model.load_state_dict({k: v for k, v in model.state_dict().items()
                                   if k in extractor.model.state_dict()}, strict=False)
        assert all(torch.equal(a, b) for a, b in zip(extractor.eval()(x), maps))


@pytest.mark.parametrize("name", ["resnet20", "densenet_bc_100_12", "googlenet_bn"])
def test_grad_checkpointing_changes_nothing_but_memory(name):
    torch.manual_seed(0)
    plain = cnnzoo.create_model(name, num_classes=4).train()
    ckpt = cnnzoo.create_model(name, num_classes=4).train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing()
    x = torch.randn(2, 3, 32, 32)
    # the same dropout masks on both sides (GoogLeNet's head drops 40 %); the recomputation replays them
    torch.manual_seed(1)
    out = plain(x)
    torch.manual_seed(1)
    out_ckpt = ckpt(x)
    out.square().sum().backward()
    out_ckpt.square().sum().backward()
    assert torch.allclose(out, out_ckpt, atol=1e-6)
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), n
    # the recomputed forward does not move batch-norm statistics a second time
    for (n, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.allclose(b.float(), c.float(), atol=1e-6), n
    ckpt.set_grad_checkpointing(False)
    assert all("forward" not in m.__dict__ for m in ckpt.modules())


def test_num_classes_zero_gives_pooled_features():
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        headless = cnnzoo.create_model("resnet18", num_classes=0).eval()
        headless.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")})
        assert headless(x).shape == (2, 512) and torch.equal(headless(x), pooled)
    assert headless.num_classes == 0 and headless.pretrained_cfg["num_classes"] == 0


def test_pools_compute_what_they_say():
    x = torch.randn(2, 3, 5, 5)
    assert layers.SelectAdaptivePool2d().pool_type == "avg"  # timm's default
    assert torch.allclose(layers.SelectAdaptivePool2d("avg")(x), x.mean((2, 3)))
    assert torch.allclose(layers.SelectAdaptivePool2d("avg", flatten=False)(x), x.mean((2, 3), keepdim=True))
    assert torch.equal(layers.SelectAdaptivePool2d("max")(x), x.amax((2, 3)))
    assert torch.allclose(layers.SelectAdaptivePool2d("avgmax")(x), (x.mean((2, 3)) + x.amax((2, 3))) / 2)
    assert layers.SelectAdaptivePool2d("")(x) is x
    with pytest.raises(ValueError, match=r"^unknown global_pool 'catavgmax': use one of 'avg', 'max', 'avgmax', ''$"):
        layers.SelectAdaptivePool2d("catavgmax")


def test_feature_indices_have_timms_meaning():
    assert feature_take_indices(5) == ([0, 1, 2, 3, 4], 4)
    assert feature_take_indices(5, 2) == ([3, 4], 4)
    assert feature_take_indices(5, (0, -2)) == ([0, 3], 3)
    with pytest.raises(ValueError, match=r"^feature index 5 is out of range for 5 stages \(use 0\.\.4, or negative "
                                         r"from the end\)$"):
        feature_take_indices(5, (5,))
    with pytest.raises(ValueError, match=r"^indices=0: the model has 5 feature stages; ask for 1 to that many$"):
        feature_take_indices(5, 0)
    info = FeatureInfo([dict(num_chs=8, reduction=2, module="a"), dict(num_chs=16, reduction=4, module="b")], (1,))
    assert (info.channels(), info.reduction(), info.module_name(), info.channels(0)) == ([16], [4], ["b"], 8)
    assert (info.reduction(0), info.module_name(0), info.module_name([1, 0])) == (2, "a", ["b", "a"])
    assert info.get_dicts() == [dict(num_chs=16, reduction=4, module="b", index=1)]
    assert info.get_dicts(("num_chs",), idx=0) == {"num_chs": 8}
    assert info.get_dicts(("module",), idx=[0, 1]) == [{"module": "a"}, {"module": "b"}]
    assert repr(info) == "FeatureInfo([{'num_chs': 16, 'reduction': 4, 'module': 'b'}])"


def test_pruned_model_says_what_happened():
    model = cnnzoo.create_model("resnet20")
    assert model.prune_intermediate_layers((0, 1)) == [0, 1]
    assert isinstance(model.layer2, Pruned) and isinstance(model.layer3, Pruned)
    maps = model.forward_intermediates(torch.randn(1, 3, 32, 32), (0, 1), intermediates_only=True)
    assert [m.shape[1] for m in maps] == [16, 16]
    message = ("layer2 was removed by prune_intermediate_layers: this model now only serves "
               "forward_intermediates(..., intermediates_only=True) up to its last kept stage")
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        model(torch.randn(1, 3, 32, 32))


def test_reset_classifier_and_set_global_pool_keep_what_they_should():
    vgg = cnnzoo.create_model("vgg11").double()
    vgg.reset_classifier(7, global_pool="max")  # VGG's classifier reads fc7's 4096, not the 512 channels
    assert (vgg.fc8.in_features, vgg.fc8.out_features, vgg.fc8.weight.dtype) == (4096, 7, torch.float64)
    assert (vgg.global_pool.pool_type, vgg.global_pool.output_size) == ("max", 7)  # VGG pools to 7x7
    with torch.device("meta"):
        meta = cnnzoo.create_model("resnet18")
    meta.reset_classifier(3)
    assert meta.fc.weight.is_meta and meta.num_classes == 3
    with pytest.raises(ValueError, match=r"^num_classes must be >= 0, got -1$"):
        meta.reset_classifier(-1)
    with pytest.raises(ValueError, match=r"^num_classes=3 needs pooled features; global_pool='' passes the feature map "
                                         r"through: use num_classes=0 with it, or another pool$"):
        meta.reset_classifier(3, global_pool="")
    meta.global_pool = nn.AdaptiveAvgPool2d(1)
    with pytest.raises(ValueError, match=r"^ResNet has no selectable pooling \(self.global_pool is not a "
                                         r"SelectAdaptivePool2d\); global_pool='max' cannot be applied$"):
        meta.set_global_pool("max")


def test_grad_checkpointing_recomputes_each_stage_with_parameters_in_backward():
    model = cnnzoo.create_model("shufflenet_v1_g1", num_classes=4)  # its first stages are a ReLU and a pool
    model.set_grad_checkpointing()
    assert model.grad_checkpointing is True
    stages = [model.get_submodule(info["module"]) for info in model.feature_info]
    assert [("forward" in m.__dict__) for m in stages] == [False, False, True, True, True]
    calls = []
    model.stages[2][0].register_forward_hook(lambda *_: calls.append(1))  # a unit inside the last stage
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert len(calls) == 2  # run without keeping its activations, then again in backward
    calls.clear()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert len(calls) == 1  # nothing to recompute without autograd
    model.set_grad_checkpointing(False)
    assert model.grad_checkpointing is False and not any("forward" in m.__dict__ for m in stages)


def test_list_models_takes_timms_filters():
    assert registry.list_models(["vgg1[19]", "lenet5"]) == ["lenet5", "vgg11", "vgg19"]
    assert registry.list_models("vgg11*", exclude_filters=["*_bn"]) == ["vgg11", "vgg11_lrn"]
    assert registry.list_models(module="alexnet") == ["alexnet", "alexnet_tv"]
    assert registry.list_models(module=["lenet", "alexnet"], name_matches_cfg=True, include_tags=True) == [
        "alexnet", "alexnet_tv", *registry.list_models("lenet*")]
    assert set(registry.list_modules()) >= {"resnet", "vgg", "polynet"}
    assert registry.list_models(pretrained=True) == [n for n in MODELS if cnnzoo.hub.pretrained_tags(n)]
    assert registry.is_model("resnet50") and not registry.is_model("resnet51")
    assert registry.model_entrypoint("resnet50") is registry._MODELS["resnet50"]
    assert registry.get_pretrained_cfg_value("xception", "input_size") == (3, 299, 299)
    assert registry.get_pretrained_cfg_value("lenet5", "fixed_input_size") is True


def test_create_model_rejects_what_cannot_work():
    with pytest.raises(ValueError, match="needs num_classes=0"):
        cnnzoo.create_model("resnet20", global_pool="")
    with pytest.raises(ValueError, match="feature_cls='fx'"):
        cnnzoo.create_model("resnet20", features_only=True, feature_cls="fx")
    with pytest.raises(ValueError, match="unknown keys"):
        cnnzoo.create_model("resnet20", pretrained_cfg_overlay=dict(colour="blue"))
    assert cnnzoo.create_model("resnet20", pretrained_cfg_overlay=dict(fixed_input_size=True)).default_cfg["fixed_input_size"]


def test_traced_batch_mode_stochastic_depth_is_refused():
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
    with pytest.raises(RuntimeError, match="cannot be traced"):
        torch.fx.symbolic_trace(model)
    torch.fx.symbolic_trace(model.eval())  # evaluation runs every branch: traceable


class Nested(ImageClassifier):
    """The smallest family the base class serves: three stages two levels down (``body.block.N``),
    one input channel and no ``default_cfg``, so nothing here leans on a real family's layout."""

    num_features = 8

    def __init__(self):
        super().__init__()
        def conv(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Sequential(OrderedDict(block=nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 8))))
        self.global_pool = layers.SelectAdaptivePool2d("avg")
        self.fc = nn.Linear(8, 5)
        self.feature_info = [dict(num_chs=c, reduction=2 ** (i + 1), module=f"body.block.{i}")
                             for i, c in enumerate((4, 8, 8))]

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, x, pre_logits=False):
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)


def test_prune_intermediate_layers_defaults_keep_the_last_stage_and_drop_the_head():
    model, x = Nested().eval(), torch.randn(2, 1, 16, 16)
    features = model.forward_features(x)
    assert model.prune_intermediate_layers() == [2]  # probed at (1, 224, 224): the model's own channels
    assert not any(isinstance(m, Pruned) for m in model.modules())
    assert isinstance(model.fc, nn.Identity) and model.global_pool.is_identity()
    assert torch.equal(model(x), features)  # the unpooled map, as timm's pruned models return
    vgg = meta_model("vgg11")
    vgg.prune_intermediate_layers()  # a head with hidden layers: they go with it
    assert [type(getattr(vgg, n)).__name__ for n in ("relu", "fc6", "drop6", "fc7", "drop7", "fc8")] == [
        "Pruned", "Pruned", "Pruned", "Pruned", "Pruned", "Identity"]


def test_a_family_that_reuses_a_module_is_probed_and_pruned():
    model = Nested()
    model.body.block[0] = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU())
    model.body.block[1] = model.body.block[2]  # one 8 -> 8 stage run twice: its weights are tied
    model.feature_info[0]["num_chs"] = 8
    assert model._shape_probe((1, 64, 64))[0] == (1, 8, 8, 8)
    assert model.prune_intermediate_layers((0,)) == [0]
    assert isinstance(model.body.block[1], Pruned)


def test_prune_intermediate_layers_keeping_the_head_removes_only_later_stages():
    model, x = Nested().eval(), torch.randn(2, 1, 16, 16)
    first = model.body.block[0](x)
    assert model.prune_intermediate_layers((0,), prune_head=False) == [0]
    assert [type(m).__name__ for m in model.body.block] == ["Sequential", "Pruned", "Pruned"]
    assert [m.name for m in model.body.block[1:]] == ["body.block.1", "body.block.2"]
    assert isinstance(model.fc, nn.Linear) and model.global_pool.pool_type == "avg"
    [kept] = model.forward_intermediates(x, [0], intermediates_only=True)
    assert torch.equal(kept, first)
    whole = Nested()
    assert whole.prune_intermediate_layers(None, prune_head=False) == [0, 1, 2]
    assert isinstance(whole.fc, nn.Linear) and not any(isinstance(m, Pruned) for m in whole.modules())


def test_forward_intermediates_runs_past_the_last_wanted_stage_only_when_asked():
    model, x = Nested().eval(), torch.randn(2, 1, 16, 16)
    calls = []
    model.body.block[2].register_forward_hook(lambda *_: calls.append(1))
    features, first = model.forward_features(x), model.body.block[0](x)
    calls.clear()
    final, [kept] = model.forward_intermediates(x, [0])  # by default the whole of forward_features runs
    assert torch.equal(final, features) and torch.equal(kept, first) and len(calls) == 1
    final, [kept] = model.forward_intermediates(x, [0], stop_early=True)
    assert torch.equal(final, first) and len(calls) == 1
    assert torch.equal(model.forward_intermediates(x, [0], intermediates_only=True)[0], first) and len(calls) == 1
    final, maps = model.forward_intermediates(x, [0, 2], stop_early=True)  # the last stage wanted: runs to the end
    assert torch.equal(final, features) and torch.equal(maps[1], features) and len(calls) == 2
    assert torch.equal(model.forward_intermediates(x, [0], norm=True)[0], features)  # no final norm to apply
    [nhwc] = model.forward_intermediates(x, [1], output_fmt="NHWC", intermediates_only=True)
    assert torch.equal(nhwc, model.body.block[1](first).permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"^output_fmt must be 'NCHW' or 'NHWC', got 'NDHW'$"):
        model.forward_intermediates(x, output_fmt="NDHW")


def test_head_resets_without_a_pool_or_parameters_keep_what_they_should():
    model = Nested()
    model.global_pool = layers.SelectAdaptivePool2d("avg", flatten=False)
    model.set_global_pool("max")
    assert (model.global_pool.pool_type, model.global_pool.flatten) == ("max", False)
    del model.global_pool  # a family without a selectable pool: its classifier still resets
    model.reset_classifier(3)
    assert (model.fc.in_features, model.fc.out_features) == (8, 3)
    with pytest.raises(ValueError, match=r"^Nested has no selectable pooling \(self.global_pool is not a "
                                         r"SelectAdaptivePool2d\); global_pool='avg' cannot be applied$"):
        model.set_global_pool("avg")
    empty = Nested()
    for name in ("body", "fc"):
        setattr(empty, name, nn.Identity())
    assert next(empty.parameters(), None) is None
    empty.reset_classifier(3)  # nothing to take a device or dtype from: torch's defaults
    assert (empty.fc.out_features, empty.fc.weight.dtype, empty.fc.weight.device.type) == (3, torch.float32, "cpu")


def test_checkpointed_stages_pass_keyword_arguments_on():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(()))

        def forward(self, x, factor=1.0):
            return self.weight * x * factor

    stage, x = Scale(), torch.ones(2)
    stage.forward = functools.partial(_checkpointed_forward, stage)  # what set_grad_checkpointing installs
    assert stage(x, factor=3.0).tolist() == [3.0, 3.0]
    with torch.no_grad():
        assert stage(x, factor=3.0).tolist() == [3.0, 3.0]


def test_he_init_is_fan_out_normal_for_convs_and_identity_batch_norm():
    """He et al. 2015 (arXiv 1502.01852), Section 2.2's backward case: std sqrt(2 / fan_out), fan_out = C_out k^2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128))
    nn.init.normal_(model[1].weight)
    nn.init.normal_(model[1].bias)
    he_init_(model)
    std = model[0].weight.std().item()  # 73,728 draws: within 1 %
    assert math.isclose(std, math.sqrt(2 / (128 * 9)), rel_tol=0.01)  # fan_in (64 * 9) would give 1.41x
    assert torch.equal(model[1].weight, torch.ones(128)) and torch.equal(model[1].bias, torch.zeros(128))


def test_notrace_registry_lists_what_was_registered():
    """timm's notrace registry: what a tracer's leaf_modules / autowrap_functions should hold."""
    from cnnzoo.layers import fx

    class Leaf(nn.Module):
        pass

    def check(x):
        return x

    try:
        assert fx.register_notrace_module(Leaf) is Leaf and Leaf in fx.get_notrace_modules()
        assert fx.register_notrace_function(check) is check and check in fx.get_notrace_functions()
    finally:
        fx._LEAF_MODULES.discard(Leaf)
        fx._AUTOWRAP_FUNCTIONS.discard(check)
    assert layers.expect_map_size in fx.get_notrace_functions()
