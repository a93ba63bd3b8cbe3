import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis import count_macs, count_params
from cnnzoo.analysis.complexity import module_macs
from cnnzoo.analysis.stochastic_depth import poly_saved_macs
from cnnzoo.layers import GateStream, StochasticDepth, seed_gates
from cnnzoo.engine.insertion import insert_init
from cnnzoo.models.polynet import KINDS, PolyConvBnAct, PolyInception, PolyNet, inception_block
from conftest import assert_built_as_registered, assert_warned_at, require_peer
from peer_models import randomize_batchnorm


def meta(name, **kwargs):
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


# Each kind's non-identity paths written out from the paper's formulas; r is the ReLU between orders.
def expected_paths(kind, blocks, x):
    r = F.relu
    F_, G, H = (blocks[i] if i < len(blocks) else None for i in range(3))
    if kind == "1-way":
        return [F_.transform(x)]
    if kind in ("2-way", "3-way"):
        return [b.transform(x) for b in blocks]
    if kind in ("poly-2", "poly-3"):  # order k: F's BNs (and 1x1) of order k where it has them
        f1 = F_.transform(x, 0)
        f2 = F_.transform(r(f1), 1)
        return [f1, f2] if kind == "poly-2" else [f1, f2, F_.transform(r(f2), 2)]
    f = F_.transform(x)
    gf = G.transform(r(f))
    return [f, gf] if kind == "mpoly-2" else [f, gf, H.transform(r(gf))]


def module(kind, sharing="full", p=1.0, mode="batch"):
    torch.manual_seed(0)
    gate = StochasticDepth(p, mode)
    return randomize_batchnorm(PolyInception(kind, "A", beta=0.3, drop_path=gate, poly_sharing=sharing))


def count_block_calls(mod):
    """Evaluations of each block F (counted at its final 1x1, which every evaluation ends with)."""
    calls = [0] * len(mod.blocks)
    for i, block in enumerate(mod.blocks):
        block.conv2d.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


@pytest.mark.parametrize("sharing", ["full", "bn", "convs"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_module_computes_its_polynomial(kind, sharing):
    mod = module(kind, sharing).eval()
    x = F.relu(torch.randn(2, 384, 5, 5))
    with torch.no_grad():
        expected = F.relu(x + 0.3 * sum(expected_paths(kind, mod.blocks, x)))
        assert torch.allclose(mod(x), expected, atol=1e-5)


@pytest.mark.parametrize("kind, calls", [("poly-2", [2]), ("poly-3", [3]), ("mpoly-3", [1, 1, 1]), ("3-way", [1, 1, 1])])
def test_cascade_evaluates_each_order_once(kind, calls):
    mod = module(kind).eval()
    counted = count_block_calls(mod)
    first_conv = []
    mod.blocks[0].branch0.conv.register_forward_hook(lambda *a: first_conv.append(1))
    with torch.no_grad():
        mod(torch.rand(1, 384, 5, 5))
    assert counted == calls
    assert len(first_conv) == calls[0]  # poly-3: F's convolutions run 3 times, not 1 + 2 + 3 = 6


def test_poly_sharing():
    full, convs = PolyInception("poly-3", "B"), PolyInception("poly-3", "B", poly_sharing="convs")
    bn = PolyInception("poly-3", "B", poly_sharing="bn")
    assert len(full.blocks) == len(convs.blocks) == len(bn.blocks) == 1
    assert len(full.blocks[0].conv2d.bn) == 1 and len(convs.blocks[0].conv2d) == 3
    assert len(convs.blocks[0].branch1[0].bn) == len(bn.blocks[0].branch1[0].bn) == 3
    assert len(bn.blocks[0].conv2d.bn) == 3  # one final 1x1 conv, a BN per order
    assert count_params(full) == count_params(inception_block("B"))
    bn_params = sum(2 * c for c in (192, 128, 160, 192, 1152))  # gamma and beta of each BN of F
    assert count_params(bn) == count_params(full) + 2 * bn_params
    assert count_params(convs) == count_params(bn) + 2 * (384 * 1152)  # two more final 1x1 convs


def test_module_defaults_are_the_papers():
    """The paper's beta = 0.3 on every path (its training setup), and BN eps 1e-5 (the release's), in a module and
    in a layer built alone."""
    module = PolyInception("2-way", "A")
    assert module.beta == 0.3
    assert {m.eps for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
    assert PolyConvBnAct(3, 4, 1).bn[0].eps == 1e-5


def test_inception_block_defaults_and_its_eps_reach_every_bn():
    """F alone: one order (one BN per conv) unless told, the release's BN eps 1e-5; the eps and norm layer given
    reach every BN, the per-order final 1x1s of ``"convs"`` sharing included (from poly-2 on)."""
    def bns(block):
        return [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def poly_layers(block):
        return [m for m in block.modules() if isinstance(m, PolyConvBnAct)]

    class Marked(torch.nn.BatchNorm2d):
        pass

    assert {b.eps for b in bns(inception_block("A"))} == {1e-5}
    assert {b.eps for b in bns(inception_block("A", eps=1e-3))} == {1e-3}
    assert {len(m.bn) for m in poly_layers(inception_block("A", sharing="bn"))} == {1}
    convs = inception_block("A", orders=2, sharing="convs", eps=1e-3, norm_layer=Marked)
    assert len(convs.conv2d) == 2 and {(type(b), b.eps) for b in bns(convs)} == {(Marked, 1e-3)}
    assert {len(m.bn) for m in poly_layers(convs)} == {1, 2}  # the shared convs' BN per order; each final 1x1's own


@pytest.mark.parametrize("kind", ["poly-3", "mpoly-3", "3-way", "mpoly-2"])
def test_dropped_paths_are_not_computed(kind):
    """Every gate pattern: a kept path is added, a dropped one is not; a cascade computes up to the last kept order."""
    mod = module(kind, sharing="convs")
    x = F.relu(torch.randn(2, 384, 5, 5))
    n = KINDS[kind].paths
    with torch.no_grad():
        paths = expected_paths(kind, mod.eval().blocks, x)
    calls = count_block_calls(mod)
    for pattern in range(2**n):
        keep = [bool(pattern >> k & 1) for k in range(n)]
        for gate, kept in zip(mod.drop_paths, keep):
            gate.open = lambda kept=kept: kept
        calls[:] = [0] * len(calls)
        with torch.no_grad():
            out = mod(x)
        assert torch.allclose(out, F.relu(x + 0.3 * sum(p for p, k in zip(paths, keep) if k)), atol=1e-5)
        last = max((k for k in range(n) if keep[k]), default=-1)
        if not KINDS[kind].cascade:
            assert calls == [int(k) for k in keep]
        elif len(mod.blocks) == 1:
            assert calls == [last + 1]
        else:
            assert calls == [int(k <= last) for k in range(n)]


def test_dropped_paths_get_no_gradient_and_gates_follow_the_shared_generator():
    mod = module("mpoly-3", p=0.5).train()
    stream = GateStream(7)
    expected = [stream.draw() < 0.5 for _ in range(3)]
    assert expected == [False, True, False]  # F dropped but needed by GF, HGF dropped
    seed_gates(mod, 7)
    mod(torch.rand(2, 384, 5, 5)).sum().backward()
    grads = [[p.grad is not None for p in block.parameters()] for block in mod.blocks]
    # F's output feeds the kept GF, so F runs and learns through it; H is never called.
    assert [all(g) for g in grads] == [True, True, False]
    assert not any(grads[2])


@pytest.mark.parametrize("kind", ["poly-3", "mpoly-3", "3-way", "poly-2"])
def test_expected_saved_macs_matches_the_gate_patterns(kind):
    """The saving ``cnnzoo info --drop-path-rate`` reports equals the average over every gate pattern."""
    mod = module(kind).eval()
    n = KINDS[kind].paths
    probs = [0.9, 0.6, 0.3][:n]
    for gate, p in zip(mod.drop_paths, probs):
        gate.survival_prob = p
    full = module_macs(mod, (384, 5, 5))
    expected = 0.0
    for pattern in range(2**n):
        keep = [bool(pattern >> k & 1) for k in range(n)]
        for gate, kept in zip(mod.drop_paths, keep):
            gate.open = lambda kept=kept: kept
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            mod(torch.rand(1, 384, 5, 5))
        chance = math.prod(p if k else 1 - p for p, k in zip(probs, keep))
        expected += chance * counter.get_total_flops() // 2
    assert full[""] - poly_saved_macs(mod, full, "") == pytest.approx(expected)
    assert poly_saved_macs(mod, full, "") > 0


def test_eval_runs_every_path_scaled_by_survival():
    mod = module("poly-3", p=0.6).eval()
    x = F.relu(torch.randn(1, 384, 5, 5))
    with torch.no_grad():
        expected = F.relu(x + 0.6 * 0.3 * sum(expected_paths("poly-3", mod.blocks, x)))
        assert torch.allclose(mod(x), expected, atol=1e-5)


def test_row_mode_masks_samples_and_computes_everything():
    mod = module("2-way", p=0.5, mode="row").train()
    calls = count_block_calls(mod)
    torch.manual_seed(1)
    mod(torch.rand(16, 384, 3, 3))
    assert calls == [1, 1]


def test_path_schedule_over_modules():
    model = meta("polynet", residual_scale=0.3, drop_path_rate=0.5)
    modules = model.modules_in_order()
    assert len(modules) == 40
    probs = [{g.survival_prob for g in m.drop_paths} for m in modules]
    assert all(len(p) == 1 for p in probs)  # every path of module l has p_l
    assert [p.pop() for p in probs] == pytest.approx([1 - l / 40 * 0.5 for l in range(1, 41)])
    assert all(g.stream is model.gate_stream for m in modules for g in m.drop_paths)  # seed_gates(model) reaches them


def test_released_per_stage_parameters():
    model = meta("polynet")
    split = {"stem": 605_728, "stage_a": 2_759_040, "reduction_a": 2_902_528, "stage_b": 44_112_000,
             "reduction_b": 3_542_784, "stage_c": 39_395_520, "fc": 2_049_000}
    assert {name: count_params(getattr(model, name)) for name in split} == split
    assert [m.kind for m in model.stage_a] == ["2-way"] * 10
    assert [m.kind for m in model.stage_b] == ["poly-3", "2-way"] * 10
    assert [m.kind for m in model.stage_c] == ["poly-3", "2-way"] * 5


def test_ablation_networks_are_registered_systematically():
    names = cnnzoo.list_models("polynet_363_*")
    kinds = {"2way": "2-way", "3way": "3-way", "poly2": "poly-2", "poly3": "poly-3", "mpoly2": "mpoly-2",
             "mpoly3": "mpoly-3"}
    assert sorted(names) == sorted(f"polynet_363_{s}_{k}" for s in "abc" for k in kinds)
    for name in names:
        stage, kind = name.split("_")[2:]
        model = meta(name)
        for s in "abc":
            modules = getattr(model, f"stage_{s}")
            assert len(modules) == {"a": 3, "b": 6, "c": 3}[s]
            assert {m.kind for m in modules} == {kinds[kind] if s == stage else "1-way"}
            assert {m.beta for m in modules} == {0.3}
    assert {m.kind for m in meta("polynet_363").modules_in_order()} == {"1-way"}
    mixed = meta("polynet_6126_b_mixed")
    assert [m.kind for m in mixed.stage_b] == ["3-way", "mpoly-3", "2-way"] * 4
    assert (len(mixed.stage_a), len(mixed.stage_c)) == (6, 6)


def test_ablation_costs_follow_the_formulas():
    """Shared F adds computation, not parameters; each extra path costs one F evaluation at its stage."""
    evals_and_blocks = {"2way": (1, 1), "3way": (2, 2), "poly2": (1, 0), "poly3": (2, 0), "mpoly2": (1, 1),
                        "mpoly3": (2, 2)}
    base = meta("polynet_363")
    for stage, depth in (("a", 3), ("b", 6), ("c", 3)):
        f_params = count_params(getattr(base, f"stage_{stage}")[0].blocks[0])
        for kind, (_, extra_blocks) in evals_and_blocks.items():
            model = meta(f"polynet_363_{stage}_{kind}")
            assert count_params(model) - count_params(base) == depth * extra_blocks * f_params
    # MACs (counting is slower): stage B, where F is evaluated once per module in the baseline.
    base_macs = count_macs(base, 75)
    f_macs = count_macs(meta("polynet_363_b_2way"), 75) - base_macs  # one more F per stage-B module
    assert f_macs > 0
    for kind, (extra_evals, _) in evals_and_blocks.items():
        assert count_macs(meta(f"polynet_363_b_{kind}"), 75) - base_macs == extra_evals * f_macs


def test_each_module_takes_its_own_beta_in_order():
    with torch.device("meta"):
        model = PolyNet((1, 1, 1), ("2-way",) * 3, beta=[0.1, 0.2, 0.3])
    assert [m.beta for m in model.modules_in_order()] == [0.1, 0.2, 0.3]


def test_builder_errors_are_clear():
    with pytest.raises(ValueError, match=r"^depths must be three module counts >= 1 \(stages A, B, C\), got \(1, 1\)$"):
        PolyNet((1, 1), ("2-way",) * 3)
    with pytest.raises(ValueError, match=r"^depths must be three module counts >= 1 \(stages A, B, C\), got \(1, 0, 1\)$"):
        PolyNet((1, 0, 1), ("2-way",) * 3)
    with pytest.raises(ValueError, match=r"^kinds must give stages A, B, C a kind or a list of kinds each, "
                                         r"got \('2-way', '2-way'\)$"):
        PolyNet((1, 1, 1), ("2-way",) * 2)
    message = f"unknown PolyInception kind 'poly-4': use one of {', '.join(KINDS)}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PolyNet((1, 1, 1), ("2-way", "poly-4", "2-way"))
    with pytest.raises(ValueError, match=r"beta must be one number or one per module \(3\), got 2 values"):
        PolyNet((1, 1, 1), ("2-way",) * 3, beta=[0.3, 0.3])
    with pytest.raises(ValueError, match="poly_sharing"):
        PolyInception("poly-2", "A", poly_sharing="some")


def test_insert_init_starts_the_deep_net_where_the_shallow_one_was():
    torch.manual_seed(0)
    kinds = ("2-way", ("poly-3", "2-way"), ("poly-3", "2-way"))
    shallow = randomize_batchnorm(PolyNet((1, 2, 2), kinds, beta=[0.9, 0.8, 0.7, 0.6, 0.5], poly_sharing="convs")).eval()
    deep = randomize_batchnorm(PolyNet((2, 4, 3), kinds, poly_sharing="convs")).eval()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        before = (deep(x) - shallow(x)).abs().max()
        insert_init(shallow, deep)
        assert (deep(x) - shallow(x)).abs().max() <= 1e-5 < before
    # stage B: shallow (poly-3, 2-way) placed at 0 and 3 of deep's (poly-3, 2-way, poly-3, 2-way)
    assert [m.beta for m in deep.stage_b] == [0.8, 0.3, 0.3, 0.7]
    assert torch.equal(deep.stage_b[3].blocks[1].conv2d.conv.weight, shallow.stage_b[1].blocks[1].conv2d.conv.weight)
    inserted = deep.stage_b[1]
    assert all(not bn.weight.any() for block in inserted.blocks for bn in block.conv2d.bn)
    with pytest.raises(ValueError, match=r"stage_a: the shallow net has 2 modules, more than the deep one's 1"):
        insert_init(deep, shallow)


@pytest.mark.heavy
def test_pretrainedmodels_weights_give_same_logits():
    pretrainedmodels_polynet = require_peer("pretrainedmodels.models.polynet")
    torch.manual_seed(0)
    peer = randomize_batchnorm(pretrainedmodels_polynet.PolyNet(), calibrate=torch.randn(2, 3, 331, 331)).eval()
    ours = cnnzoo.import_weights(cnnzoo.create_model("polynet"), peer.state_dict(), source="pretrainedmodels").eval()
    assert [m.beta for m in ours.modules_in_order()] == [m.scale for m in (*peer.stage_a, *peer.stage_b, *peer.stage_c)]
    # In float64: with calibrated statistics each of the 60 residual modules amplifies a perturbation
    # (float32's rounding, 4e-6 after the first module, grows to 1e-2 of the logits); in float64 it stays tiny.
    x = torch.randn(1, 3, 331, 331, dtype=torch.float64)  # the release pools a fixed 9 x 9 map: 331 is the smallest
    with torch.no_grad():
        expected = peer.double()(x)
        assert expected.std() > 0.1 and (ours.double()(x) - expected).abs().max() <= 1e-8


def test_info_reports_paths_and_their_saving(capsys):
    from cnnzoo.cli import main

    assert main(["info", "polynet_363_b_poly3", "--drop-path-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    # 12 modules: 3 + 3 1-way paths in A and C, 6 x 3 poly-3 paths in B; p_l = 1 - l / 24 over the modules
    assert "24 paths, expected active E[L~] = 17.50" in out
    assert "100.0% of the full" not in out


def test_insert_init_old_import_path_still_works_with_a_warning():
    import cnnzoo.models.polynet as polynet

    with pytest.warns(DeprecationWarning) as record:
        old = polynet.insert_init
    assert old is insert_init
    assert [str(w.message) for w in record] == [
        "cnnzoo.models.polynet.insert_init moved to cnnzoo.engine.insertion.insert_init"]
    assert_warned_at(record[0], __file__)  # the warning points at the caller's line
    with pytest.raises(AttributeError, match=r"^module 'cnnzoo.models.polynet' has no attribute 'nothing'$"):
        polynet.nothing


KINDS_OF_RELEASE = {"InceptionResNetA2Way": "2-way", "InceptionResNetB2Way": "2-way", "InceptionResNetC2Way": "2-way",
                    "InceptionResNetBPoly3": "poly-3", "InceptionResNetCPoly3": "poly-3"}


def test_very_deep_layout_is_the_releases():
    """The order of poly-3 and 2-way within each stage, as the released model has it (see VERY_DEEP_KINDS)."""
    release = require_peer("pretrainedmodels.models.polynet")
    with torch.device("meta"):
        peer = release.PolyNet()
    ours = meta("polynet")
    for stage in ("stage_a", "stage_b", "stage_c"):
        assert [m.kind for m in getattr(ours, stage)] == [KINDS_OF_RELEASE[type(m).__name__] for m in getattr(peer, stage)]
        assert [m.beta for m in getattr(ours, stage)] == [m.scale for m in getattr(peer, stage)]


def test_residual_scale_paper_or_released():
    from pathlib import Path

    from cnnzoo.engine.config import load_config
    from cnnzoo.models.polynet import RELEASED_BETAS

    assert [m.beta for m in meta("polynet").modules_in_order()] == list(RELEASED_BETAS)  # the weights need them
    assert {m.beta for m in meta("polynet", residual_scale=0.3).modules_in_order()} == {0.3}
    assert {m.beta for m in meta("polynet_shared").modules_in_order()} == {0.3}  # the paper's text
    # the recipe trains with the paper's beta, and says so to the model
    root = Path(__file__).resolve().parents[1]
    recipe = next(p for p in (root / "configs", root / "src/cnnzoo/configs") if (p / "polynet_imagenet.yaml").exists())
    cfg = load_config(recipe / "polynet_imagenet.yaml")
    assert {m.beta for m in meta(cfg.model, **cfg.model_kwargs).modules_in_order()} == {0.3}
    with pytest.raises(ValueError, match="residual_scale must be 'released' or a number"):
        meta("polynet", residual_scale="paper")


def test_residual_scale_is_a_number_in_0_1_or_released():
    from cnnzoo.layers import DropPathSpec
    from cnnzoo.models.polynet import RELEASED_BETAS, very_deep_betas

    assert (very_deep_betas(1, None), very_deep_betas(0.3, None)) == (1.0, 0.3)
    for bad in (0, 1.5, True, "paper"):
        with pytest.raises(ValueError, match=rf"^residual_scale must be 'released' or a number in \(0, 1\], "
                                             rf"got {re.escape(repr(bad))}$"):
            very_deep_betas(bad, None)
    assert very_deep_betas("released", DropPathSpec(0.0)) == RELEASED_BETAS  # no stochastic paths: no clash
    with pytest.raises(ValueError) as error:
        very_deep_betas("released", DropPathSpec(0.3))
    assert str(error.value) == ("the released residual scales (1.0 falling to 0.7) already include stochastic paths'"
                                " evaluation scaling, which drop_path_rate would apply twice: add"
                                " drop_path_inverted=True, or use residual_scale=0.3 (the paper's beta)")


def test_released_scales_are_not_applied_twice_with_stochastic_paths():
    """The released factors hold the evaluation scaling of stochastic paths: the gates must not add theirs."""
    with pytest.raises(ValueError, match="would apply twice: add drop_path_inverted=True"):
        meta("polynet", drop_path_rate=0.3)
    model = meta("polynet", drop_path_rate=0.3, drop_path_inverted=True)
    assert all(g.inverted for m in model.modules_in_order() for g in m.drop_paths)
    # evaluation then adds beta * path once: not beta * p, not beta twice
    torch.manual_seed(0)
    beta, p = 0.8, 0.6
    mod = randomize_batchnorm(PolyInception("2-way", "A", beta=beta, drop_path=StochasticDepth(p, inverted=True))).eval()
    x = F.relu(torch.randn(1, 384, 5, 5))
    with torch.no_grad():
        assert torch.allclose(mod(x), F.relu(x + beta * sum(expected_paths("2-way", mod.blocks, x))), atol=1e-5)
    # with the paper's beta, the gates' p_l scales at evaluation, once
    paper = meta("polynet", residual_scale=0.3, drop_path_rate=0.3)
    assert {m.beta for m in paper.modules_in_order()} == {0.3}


def test_insert_init_preserves_the_function_with_stochastic_paths():
    from cnnzoo.layers import DropPathSpec

    torch.manual_seed(0)
    kinds = ("2-way", ("poly-3", "2-way"), ("poly-3", "2-way"))
    paths = DropPathSpec(0.5)
    shallow = randomize_batchnorm(PolyNet((1, 2, 2), kinds, beta=[0.9, 0.8, 0.7, 0.6, 0.5], poly_sharing="convs",
                                          drop_rate=0.0, drop_path=paths))
    deep = randomize_batchnorm(PolyNet((2, 4, 3), kinds, poly_sharing="convs", drop_rate=0.0, drop_path=paths))
    insert_init(shallow, deep)
    x = torch.randn(2, 3, 75, 75)
    # evaluation: every path scaled by its p_l; the moved modules keep shallow's
    with torch.no_grad():
        assert (deep.eval()(x) - shallow.eval()(x)).abs().max() <= 1e-5
    placed = [m for m in deep.modules_in_order() if m.beta != 0.3]
    inserted = [m for m in deep.modules_in_order() if m.beta == 0.3]
    assert len(placed) == 5 and len(inserted) == 4
    assert [[g.survival_prob for g in m.drop_paths] for m in placed] == [
        [g.survival_prob for g in m.drop_paths] for m in shallow.modules_in_order()]
    # training: an inserted module adds nothing whatever its gates draw (BN on batch statistics)
    h = F.relu(torch.randn(4, 1152, 5, 5))
    for module in inserted[1:3]:  # stage B's: one poly-3, one 2-way
        module.train()
        for pattern in ((True,) * 3, (False, True, True), (True, False, False)):
            for gate, kept in zip(module.drop_paths, pattern):
                gate.open = lambda kept=kept: kept
            with torch.no_grad():
                assert torch.equal(module(h), h)
    # training: the same random function. With the moved modules' gates drawing as shallow's did, deep's
    # output is shallow's, whatever the inserted ones draw; their probabilities are shallow's (above).
    for net in (shallow, deep):
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()  # batch statistics would differ only by the batch, not by the gates
    for seed in range(3):
        seed_gates(shallow, seed)
        with torch.no_grad():
            expected = shallow(x)
        for mine, theirs in zip(placed, shallow.modules_in_order()):
            for gate, ref in zip(mine.drop_paths, theirs.drop_paths):
                gate.open = lambda kept=ref._open: kept
        seed_gates(deep, 100 + seed)
        with torch.no_grad():
            assert (deep(x) - expected).abs().max() <= 1e-5


def test_polynet_built_directly_is_polynet_shared():
    from cnnzoo.models.polynet import PolyNet

    assert_built_as_registered(PolyNet, "polynet_shared", dropout=0.2)  # the paper's text: F fully shared, beta 0.3


def test_stem_alone_takes_rgb_and_gives_384_maps_at_35():
    from cnnzoo.models.polynet import Stem

    with torch.device("meta"):
        stem = Stem()
    assert stem.conv1[0].conv.in_channels == 3
    assert stem(torch.empty(1, 3, 299, 299, device="meta")).shape == (1, 384, 35, 35)


def test_per_order_batch_norm_serves_each_order_its_own_statistics():
    torch.manual_seed(0)
    layer = PolyConvBnAct(3, 4, 1, orders=2).eval()
    layer.bn[1].running_mean.fill_(-1.0)
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(layer(x, 1), F.relu(layer.bn[1](layer.conv(x))))
        assert torch.equal(layer(x, 0), F.relu(layer.bn[0](layer.conv(x))))
        assert not torch.equal(layer(x, 1), layer(x, 0))
    shared = PolyConvBnAct(3, 4, 1).eval()  # one BN for every order ("full" sharing)
    with torch.no_grad():
        assert torch.equal(shared(x, 2), shared(x, 0))


def test_an_ablation_entry_is_named_documented_and_built_from_its_stage(monkeypatch):
    from cnnzoo import registry
    from cnnzoo.models.polynet import _register_ablation

    for table in ("_MODELS", "_CFGS", "_MODULES"):  # a private registry: the real one is left as it was
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    _register_ablation((1, 2, 1), "B", "mpoly-2", "mpoly2", "with every stage-B module an mpoly-2 PolyInception")
    _register_ablation((1, 1, 1), None, "1-way", "", "the baseline")
    entry = registry._MODELS["polynet_121_b_mpoly2"]
    assert entry.__name__ == entry.__qualname__ == "polynet_121_b_mpoly2"
    assert entry.__doc__ == "IR 1-2-1 with every stage-B module an mpoly-2 PolyInception."
    assert registry._CFGS["polynet_121_b_mpoly2"].paper == cnnzoo.model_cfg("polynet_363").paper
    with torch.device("meta"):
        model = entry(num_classes=10)
        baseline = registry._MODELS["polynet_111"]()
    assert [[m.kind for m in getattr(model, f"stage_{s}")] for s in "abc"] == [["1-way"], ["mpoly-2"] * 2, ["1-way"]]
    assert model.fc.out_features == 10
    assert [m.kind for m in baseline.modules_in_order()] == ["1-way"] * 3
