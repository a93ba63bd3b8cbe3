import pytest
import torch

import cnnzoo
from cnnzoo.layers import (DropPathSpec, GateStream, StochasticDepth, gate_state, load_gate_state, seed_gates,
                           survival_probs)
from cnnzoo.layers.drop import gate_streams


def test_linear_schedule_is_the_papers():
    probs = survival_probs(54, 0.5)
    assert probs[0] == pytest.approx(1 - 0.5 / 54) and probs[-1] == pytest.approx(0.5)
    assert probs[26] == pytest.approx(1 - 27 / 54 * 0.5)
    assert sum(probs) == pytest.approx(40.25)
    assert survival_probs(4, 0.2, "uniform") == [0.8] * 4


def test_resnet110_expected_depth():
    model = cnnzoo.create_model("resnet110", drop_path_rate=0.5)
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert len(gates) == 54
    assert sum(g.survival_prob for g in gates) == pytest.approx(40.25)


def test_closed_gate_never_calls_the_branch_and_gives_no_gradient():
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.9, drop_path_schedule="uniform").train()
    calls = {}
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]
    for i, block in enumerate(blocks):
        block.conv1.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
    stream = GateStream(1)
    expected = [stream.draw() < 0.1 for _ in blocks]  # the same draws, in block order
    seed_gates(model, 1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert 0 < sum(expected) < len(blocks)
    for i, (block, kept) in enumerate(zip(blocks, expected)):
        assert calls.get(i, 0) == int(kept)
        assert (block.conv1.weight.grad is not None) == kept


def test_eval_output_is_the_scaled_sum():
    torch.manual_seed(0)
    branch = torch.nn.Conv2d(3, 3, 3, padding=1)
    x, shortcut = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    sd = StochasticDepth(0.7).eval()
    with torch.no_grad():
        assert torch.allclose(sd(shortcut, branch, x), shortcut + 0.7 * branch(x))
        inverted = StochasticDepth(0.7, inverted=True).eval()
        assert torch.allclose(inverted(shortcut, branch, x), shortcut + branch(x))


def test_batch_mode_training_adds_open_branch_unscaled_or_inverted():
    branch = lambda t: torch.ones_like(t)  # noqa: E731
    x = torch.zeros(2, 1)
    for inverted, value in ((False, 1.0), (True, 2.0)):
        sd = StochasticDepth(0.5, inverted=inverted).train()
        outs = {sd(x, branch, x)[0, 0].item() for _ in range(50)}
        assert outs == {0.0, value}


def test_row_mode_masks_per_sample_and_always_computes():
    torch.manual_seed(0)
    calls = []
    sd = StochasticDepth(0.5, mode="row").train()
    for _ in range(20):  # a batch-mode gate at p = 0.5 would skip some of these calls
        out = sd(torch.zeros(64, 1), lambda t: calls.append(1) or torch.ones_like(t), torch.zeros(64, 1))
        assert set(out.flatten().tolist()) == {0.0, 1.0}
    assert len(calls) == 20


def test_same_seed_same_gates_across_replicas():
    """What DDP needs: two replicas (built apart, as on two ranks) that reseed with the step's seed drop the same blocks."""
    x = torch.randn(2, 3, 32, 32)

    def draws(seed):
        model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
        seed_gates(model, seed)
        with torch.no_grad():
            model(x)
        return [b.drop_path._open for stage in (model.layer1, model.layer2, model.layer3) for b in stage]

    assert draws(123) == draws(123)
    assert draws(123) != draws(124)


def test_the_model_owns_its_gate_stream_and_each_call_draws_new_gates():
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]
    streams = {id(b.drop_path.stream) for b in blocks}
    assert len(streams) == 1 and model.gate_stream is blocks[0].drop_path.stream
    other = cnnzoo.create_model("resnet20", drop_path_rate=0.5)
    assert other.gate_stream is not model.gate_stream
    # the stream is not part of the weights: the state_dict has the same keys as without stochastic depth
    assert model.state_dict().keys() == cnnzoo.create_model("resnet20").state_dict().keys()
    x = torch.randn(2, 3, 32, 32)
    seed_gates(model, 5)
    passes = []
    with torch.no_grad():
        for _ in range(4):
            model(x)
            passes.append([b.drop_path._open for b in blocks])
    assert len({tuple(p) for p in passes}) > 1  # every call draws new gates
    # the gates come from the model's stream, whatever state torch's global generator is in
    torch.manual_seed(1234)
    seed_gates(model, 5)
    with torch.no_grad():
        model(x)
    assert [b.drop_path._open for b in blocks] == passes[0]


def test_gate_state_restores_the_stream():
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]
    x = torch.randn(2, 3, 32, 32)
    seed_gates(model, 11)
    saved = gate_state(model)
    with torch.no_grad():
        model(x)
        first = [b.drop_path._open for b in blocks]
        model(x)
        load_gate_state(model, saved)
        model(x)
    assert [b.drop_path._open for b in blocks] == first
    assert gate_state(cnnzoo.create_model("resnet20")) == []  # no stochastic depth: no stream
    with pytest.raises(TypeError, match=r"seed_gates\(model, seed\)"):
        seed_gates(3)


def test_keywords_become_one_spec():
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.2, drop_path_mode="row", drop_path_schedule="uniform",
                                drop_path_inverted=True)
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert {(g.survival_prob, g.mode, g.inverted) for g in gates} == {(0.8, "row", True)}
    spec = DropPathSpec(0.2, "row", "uniform", True)
    same = cnnzoo.create_model("resnet20", drop_path=spec)
    assert [(g.survival_prob, g.mode, g.inverted) for g in same.modules() if isinstance(g, StochasticDepth)] == [
        (g.survival_prob, g.mode, g.inverted) for g in gates]
    with pytest.raises(ValueError, match="not both"):
        cnnzoo.create_model("resnet20", drop_path=spec, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="drop_path_mode"):
        DropPathSpec(0.1, mode="column")


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="drop_path_mode"):
        StochasticDepth(0.5, mode="column")
    with pytest.raises(ValueError, match="drop_path_schedule"):
        survival_probs(3, 0.5, "cosine")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cnnzoo.create_model("resnet20", drop_path_rate=1.0)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_recomputes_with_the_same_gates(use_reentrant):
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5, drop_path_schedule="uniform").train()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)

    def run(checkpointed):
        model.zero_grad()
        seed_gates(model, 7)
        out = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                out = checkpoint(block, out, use_reentrant=use_reentrant) if checkpointed else block(out)
        model.forward_head(out).sum().backward()
        return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]

    plain, checkpointed = run(False), run(True)
    assert any(g is None for g in plain)  # some blocks were dropped in this step
    for a, b in zip(plain, checkpointed):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


def test_row_mode_keeps_or_drops_whole_samples_of_any_rank():
    torch.manual_seed(0)
    branch_out = torch.randn(16, 3, 2, 5) + 10  # never zero
    out = StochasticDepth(0.5, mode="row").train().weigh(branch_out)
    assert out.shape == branch_out.shape
    kept = [torch.equal(o, b) for o, b in zip(out, branch_out)]
    dropped = [not o.any() for o in out]
    assert all(k or d for k, d in zip(kept, dropped)) and any(kept) and any(dropped)


def test_a_gate_that_always_keeps_draws_no_random_numbers():
    """p = 1 (an undropped block) consumes neither its gate stream nor torch's global generator, so adding such a
    block does not shift the gates or dropout masks of the others."""
    stream = GateStream(5)
    torch.manual_seed(5)
    for mode in ("batch", "row"):
        sd = StochasticDepth(1.0, mode=mode, stream=stream).train()
        assert sd.open()
        assert torch.equal(sd.weigh(torch.ones(4, 2)), torch.ones(4, 2))
    assert torch.rand((), generator=stream.generator) == torch.rand((), generator=torch.Generator().manual_seed(5))
    assert torch.rand(()) == torch.rand((), generator=torch.Generator().manual_seed(5))


def test_default_gate_never_drops_nor_scales():
    sd = StochasticDepth()
    assert sd.survival_prob == 1.0 and sd.mode == "batch" and not sd.inverted
    x, shortcut = torch.randn(3), torch.randn(3)
    with torch.no_grad():
        assert torch.equal(sd.train()(shortcut, lambda t: 2 * t, x), shortcut + 2 * x)
        assert torch.equal(sd.eval()(shortcut, lambda t: 2 * t, x), shortcut + 2 * x)


def test_sum_is_in_place_only_without_autograd():
    """Inference reuses the branch's fresh output for the sum; with autograd on, nothing is overwritten."""
    sd = StochasticDepth(1.0).eval()
    shortcut = torch.ones(3)
    x = torch.randn(3, requires_grad=True)
    out = sd(shortcut, lambda t: t, x)  # the branch returns its input: an in-place sum would overwrite x
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(3)) and torch.equal(out.detach(), x.detach() + 1)
    fresh = torch.randn(3)
    with torch.no_grad():
        got = sd(shortcut, lambda t: fresh, fresh)
    assert got.data_ptr() == fresh.data_ptr()


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointed_blocks_inside_a_model_call_keep_their_gates(use_reentrant):
    """Checkpointing inside the model's own forward: the recomputation in backward sees the forward's gates."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5, drop_path_schedule="uniform").train()
    x = torch.randn(4, 3, 32, 32)

    def grads(seed):
        model.zero_grad()
        seed_gates(model, seed)
        model(x).sum().backward()
        return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]

    plain = grads(3)
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            block.forward = lambda t, f=block.forward: checkpoint(f, t, use_reentrant=use_reentrant)
    checkpointed = grads(3)
    assert any(g is None for g in plain)
    for a, b in zip(plain, checkpointed):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointing_the_whole_model_keeps_its_gates(use_reentrant):
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5, drop_path_schedule="uniform").train()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)

    def grads(checkpointed):
        model.zero_grad()
        seed_gates(model, 9)
        out = checkpoint(model, x, use_reentrant=use_reentrant) if checkpointed else model(x)
        out.sum().backward()
        return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]

    plain, checkpointed = grads(False), grads(True)
    assert any(g is None for g in plain)
    for a, b in zip(plain, checkpointed):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


def test_linear0_schedule_starts_the_line_one_block_earlier():
    """EfficientNet's reference code: p_l = 1 - ((l - 1) / L) * rate, so the first block is never dropped."""
    assert survival_probs(4, 0.5, "linear0") == [1.0, 0.875, 0.75, 0.625]
    assert survival_probs(4, 0.5, "uniform") == [0.5] * 4


def test_spec_checks_its_schedule_and_gates_take_the_familys_convention():
    with pytest.raises(ValueError, match="drop_path_schedule"):
        DropPathSpec(0.1, schedule="cosine")
    assert not any(g.inverted for g in DropPathSpec(0.5).gates(3))  # no convention given: Huang et al.'s
    assert all(g.inverted for g in DropPathSpec(0.5).gates(3, inverted=True))  # the family's convention
    assert all(g.inverted for g in DropPathSpec(0.5, inverted=True).gates(3, inverted=False))  # the spec wins
    assert not any(g.inverted for g in DropPathSpec(0.5, inverted=False).gates(3, inverted=True))


def test_twin_gates_share_the_stream_and_settings():
    gate = StochasticDepth(0.6, mode="batch", inverted=True)
    twin = gate.twin()
    assert (twin.survival_prob, twin.mode, twin.inverted) == (0.6, "batch", True)
    assert twin.stream is gate.stream is not None
    assert StochasticDepth(0.6, mode="row").twin().inverted is False


def test_gate_streams_of_two_models_in_one_are_seeded_apart():
    """A module holding two models has two streams; seed_gates gives stream i the seed seed + i."""
    pair = torch.nn.ModuleList([cnnzoo.create_model("resnet20", drop_path_rate=0.5) for _ in range(2)])
    streams = [m.gate_stream for m in pair]
    assert [id(s) for s in gate_streams(pair)] == [id(s) for s in streams]
    seed_gates(pair, 7)
    for i, stream in enumerate(streams):
        assert torch.equal(stream.state(), torch.Generator().manual_seed(7 + i).get_state())
    with pytest.raises(TypeError, match="seed_gates takes"):
        seed_gates(pair, None)
    model = pair[0]
    assert GateStream.of(model) is GateStream.of(model) is model.gate_stream  # one stream per owner


def test_load_gate_state_takes_an_old_checkpoints_single_tensor():
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5)
    saved = torch.Generator().manual_seed(3).get_state()
    load_gate_state(model, saved)
    assert torch.equal(model.gate_stream.state(), saved)


def test_reseeding_twice_lets_a_replayed_call_draw_again():
    """A resume restores torch's global RNG, so a call's tag can repeat; each reseed must still mean a new draw."""
    expected = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    starts = [e.get_state() for e in expected]
    for e in expected:
        torch.rand((), generator=e)  # one gate drawn after each reseed or restore
    for reset in ("seed", "set_state"):
        gate = StochasticDepth(0.5).train()
        draws = []
        for seed, start in zip((1, 2, 3), starts):
            stream = gate.own_stream()
            stream.seed(seed) if reset == "seed" else stream.set_state(start)
            torch.manual_seed(0)  # the same tag for every call
            gate.open()
            draws.append(stream.state())
        assert all(torch.equal(d, e.get_state()) for d, e in zip(draws, expected)), reset


def test_error_messages_say_what_to_do():
    with pytest.raises(ValueError, match=r"^give drop_path=DropPathSpec\(\.\.\.\) or the drop_path_\* keywords, not both$"):
        cnnzoo.create_model("resnet20", drop_path=DropPathSpec(0.1), drop_path_rate=0.1)
    with pytest.raises(TypeError, match=r"^seed_gates takes the model whose gates to reseed: seed_gates\(model, seed\)$"):
        seed_gates(3)
    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
    with pytest.raises(RuntimeError, match=r"^stochastic depth in 'batch' mode decides in Python whether a branch runs: "
                                           r"a training-mode graph cannot be traced; trace in eval mode, or build with "
                                           r"drop_path_mode='row'$"):
        torch.fx.symbolic_trace(model)
