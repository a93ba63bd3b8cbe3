import math
import re

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


def test_rmsprop_tf_defaults_and_argument_checks():
    """Inception-v3/v4's and PolyNet's RMSProp: lr 0.045, decay 0.9, momentum 0.9, eps 1.0; bad values are refused
    one by one, and the limits themselves (0) are allowed."""
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert RMSpropTF(p).defaults == dict(lr=0.045, decay=0.9, momentum=0.9, eps=1.0, weight_decay=0.0)
    for bad in (dict(lr=-0.1), dict(eps=-1.0), dict(decay=1.0), dict(decay=-0.1)):
        args = dict(dict(lr=0.1, eps=1.0, decay=0.9), **bad)
        message = f"RMSpropTF needs lr >= 0, eps >= 0 and decay in [0, 1): got {args['lr']}, {args['eps']}, {args['decay']}"
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            RMSpropTF(p, **args)
    RMSpropTF(p, lr=0.0, eps=0.0, decay=0.0)
    RMSpropTF(p, lr=0.1, eps=0.5, decay=0.99)


def test_every_config_value_reaches_the_optimizer():
    model = torch.nn.Linear(2, 2)
    values = dict(lr=0.3, rmsprop_decay=0.8, momentum=0.5, rmsprop_eps=0.7, weight_decay=0.01)
    tf = build_optimizer(load_config(None, dict(values, optimizer="rmsprop_tf")), model)
    assert tf.defaults == dict(lr=0.3, decay=0.8, momentum=0.5, eps=0.7, weight_decay=0.01)
    assert tf.param_groups[0]["params"] == list(model.parameters())
    rms = build_optimizer(load_config(None, dict(values, optimizer="rmsprop")), model)
    assert isinstance(rms, torch.optim.RMSprop) and not isinstance(rms, RMSpropTF)
    assert {k: rms.defaults[k] for k in ("lr", "alpha", "momentum", "eps", "weight_decay")} == dict(
        lr=0.3, alpha=0.8, momentum=0.5, eps=0.7, weight_decay=0.01)
    assert rms.param_groups[0]["params"] == list(model.parameters())
    sgd = build_optimizer(load_config(None, dict(values, optimizer="sgd", nesterov=False)), model)
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")} == dict(
        lr=0.3, momentum=0.5, nesterov=False, weight_decay=0.01)
    # Nesterov needs momentum: without it the flag is dropped (torch would refuse it)
    assert not build_optimizer(load_config(None, dict(nesterov=True, momentum=0.0)), model).defaults["nesterov"]
    frozen = torch.nn.Linear(2, 2)
    frozen.bias.requires_grad_(False)
    assert build_optimizer(load_config(None), frozen).param_groups[0]["params"] == [frozen.weight]


def test_unknown_optimizer_and_schedule_are_one_line_errors():
    cfg = load_config(None)
    cfg.optimizer = "adam"  # past the config's own check, as a caller building a TrainConfig by hand could
    with pytest.raises(ValueError, match=r"^unknown optimizer 'adam': use sgd, rmsprop_tf or rmsprop$"):
        build_optimizer(cfg, torch.nn.Linear(1, 1))
    cfg = load_config(None, {"warmup": 0})
    cfg.schedule = "poly"
    with pytest.raises(ValueError, match=r"^unknown schedule 'poly': use constant, step, multistep, exponential, "
                                         r"cosine or linear$"):
        Schedule(cfg, 10)(0)
    with pytest.raises(ValueError, match=r"^schedule 'multistep' needs milestones, e.g. milestones=\[30,60,80\]$"):
        Schedule(load_config(None, {"schedule": "multistep"}), 10)


def schedule(steps_per_epoch=1, **cfg) -> Schedule:
    return Schedule(load_config(None, {"warmup": 0, **cfg}), steps_per_epoch)


def test_schedule_edges():
    # a step of one iteration decays at the first iteration
    assert schedule(schedule="step", step_size=1, schedule_unit="iter", gamma=0.5)(1) == 0.5
    # one iteration in all: cosine reaches its floor after it, and stays there past the end
    assert schedule(schedule="cosine", epochs=1)(1) == pytest.approx(0.0, abs=1e-12)
    cos = schedule(schedule="cosine", epochs=100, lr=0.1, min_lr=0.01)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    assert cos(150) == pytest.approx(0.1)
    # cosine runs from the end of warmup to the last iteration
    warm = schedule(schedule="cosine", epochs=110, warmup=10, schedule_unit="iter", warmup_start=0.0)
    assert warm(5) == pytest.approx(0.5) and warm(10) == 1.0 and warm(60) == pytest.approx(0.5)
    assert warm(110) == pytest.approx(0.0, abs=1e-12)
    assert schedule(schedule="cosine", epochs=11, warmup=10, schedule_unit="iter")(11) == pytest.approx(0.0, abs=1e-12)


def test_linear_schedule_edges():
    """Linear (Caffe's poly, power 1): from the end of warmup to 0 (or min_lr) at the last iteration, then flat."""
    warm = schedule(schedule="linear", epochs=110, warmup=10, schedule_unit="iter", warmup_start=0.0)
    assert warm(10) == 1.0 and warm(60) == pytest.approx(0.5) and warm(110) == 0.0 and warm(200) == 0.0
    assert schedule(schedule="linear", epochs=11, warmup=10, schedule_unit="iter")(11) == 0.0
    assert schedule(schedule="linear", epochs=1)(1) == 0.0
