import pytest
import torch

import cnnzoo
from cnnzoo.layers import StochasticDepth, seed_gates, survival_probs
from cnnzoo.layers.drop import gate_generator


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
    seed_gates(1)
    expected = [StochasticDepth(0.1).gate() for _ in blocks]  # the same draws, in block order
    seed_gates(1)
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
    out = sd(torch.zeros(64, 1), lambda t: calls.append(1) or torch.ones_like(t), torch.zeros(64, 1))
    assert len(calls) == 1
    assert set(out.flatten().tolist()) == {0.0, 1.0}


def test_same_seed_same_gates_across_replicas():
    """What DDP needs: ranks that reseed with the step's seed drop the same blocks."""
    def draws(seed):
        seed_gates(seed)
        return [StochasticDepth(0.5).gate() for _ in range(32)]

    assert draws(123) == draws(123)
    assert draws(123) != draws(124)
    assert isinstance(gate_generator, torch.Generator)


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
        seed_gates(7)
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
