import math

import pytest
import torch

from cnnzoo.engine import RMSpropTF, Schedule, build_optimizer, load_config


def test_rmsprop_tf_follows_tensorflow_and_differs_from_torch():
    """Two steps by hand in TF's convention: ms from 1, eps inside the root, lr inside the momentum buffer."""
    g1, g2 = torch.tensor([0.5, -2.0]), torch.tensor([1.5, 0.25])
    lr, decay, mom, eps = 0.1, 0.9, 0.9, 1.0
    ms, buf, w = torch.ones(2), torch.zeros(2), torch.tensor([1.0, 1.0])
    for g in (g1, g2):
        ms = decay * ms + (1 - decay) * g * g
        buf = mom * buf + lr * g / torch.sqrt(ms + eps)
        w = w - buf

    ours = torch.nn.Parameter(torch.ones(2))
    opt = RMSpropTF([ours], lr=lr, decay=decay, momentum=mom, eps=eps)
    for g in (g1, g2):
        ours.grad = g.clone()
        opt.step()
    assert torch.allclose(ours.detach(), w, atol=1e-6)
    # torch's first step is lr * g / (sqrt((1 - decay) g^2) + eps), from a mean square of 0: another update
    v = (1 - decay) * g1 * g1
    torch_first = lr * g1 / (v.sqrt() + eps)
    tf_first = lr * g1 / (decay + v + eps).sqrt()
    assert ((torch_first - tf_first).abs() / tf_first.abs()).min() > 0.05  # 20% and 7% here
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = g1.clone()
    torch.optim.RMSprop([p], lr=lr, alpha=decay, momentum=mom, eps=eps).step()
    assert torch.allclose(1 - p.detach(), torch_first, atol=1e-6)


def test_rmsprop_tf_weight_decay_is_an_l2_gradient_term():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = RMSpropTF([p], lr=0.1, decay=0.9, momentum=0.0, eps=1.0, weight_decay=0.5)
    p.grad = torch.tensor([0.0])
    opt.step()
    g = 0.5 * 2.0  # the decay term alone
    assert p.item() == pytest.approx(2.0 - 0.1 * g / math.sqrt(0.9 + 0.1 * g * g + 1.0))


def test_optimizer_choice_and_sgd_settings():
    model = torch.nn.Linear(2, 2)
    sgd = build_optimizer(load_config(None, {"nesterov": True, "weight_decay": 1e-4}), model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 1e-4
    tf = build_optimizer(load_config(None, {"optimizer": "rmsprop_tf", "rmsprop_eps": 1.0}), model)
    assert isinstance(tf, RMSpropTF) and tf.defaults["eps"] == 1.0 and tf.defaults["decay"] == 0.9


def factors(steps_per_epoch=10, **cfg):
    schedule = Schedule(load_config(None, {"warmup": 0, "epochs": 10, **cfg}), steps_per_epoch)
    return [schedule(i) for i in range(10 * steps_per_epoch)]


def test_multistep_in_epochs_and_in_iterations_agree():
    by_epoch = factors(schedule="multistep", milestones=[3, 6])
    by_iter = factors(schedule="multistep", milestones=[30, 60], schedule_unit="iter")
    assert by_epoch == by_iter
    assert by_epoch[29] == 1.0 and by_epoch[30] == pytest.approx(0.1) and by_epoch[60] == pytest.approx(0.01)


def test_exponential_is_094_every_two_epochs():
    f = factors(schedule="exponential", gamma=0.94, step_size=2)
    assert f[19] == 1.0 and f[20] == pytest.approx(0.94) and f[99] == pytest.approx(0.94**4)


def test_step_cosine_and_warmup():
    assert factors(schedule="step", step_size=4, gamma=0.5)[40] == pytest.approx(0.5)
    cos = factors(schedule="cosine", min_lr=0.0)
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5, abs=0.02) and cos[-1] < 0.001
    warm = factors(schedule="constant", warmup=2, warmup_start=0.1)
    assert warm[0] == pytest.approx(0.1) and warm[10] == pytest.approx(0.55) and warm[20:] == [1.0] * 80


def test_multistep_without_milestones_is_an_error():
    with pytest.raises(ValueError, match="milestones"):
        Schedule(load_config(None, {"schedule": "multistep"}), 10)


def test_linear_decays_evenly_to_min_lr():
    f = factors(schedule="linear", min_lr=0.0)  # lr 0.1 in the defaults; 100 steps
    assert f[0] == 1.0 and f[25] == pytest.approx(0.75) and f[50] == pytest.approx(0.5) and f[99] == pytest.approx(0.01)
    floor = factors(schedule="linear", min_lr=0.02)
    assert floor[50] == pytest.approx(0.2 + 0.8 * 0.5)
