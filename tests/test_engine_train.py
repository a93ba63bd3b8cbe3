import math
import re
import signal

import pytest
import torch
import torch.nn.functional as F
from standin_data import TinyNet, one_thread, registered, standin_cli, synthetic  # noqa: F401  (fixtures)
from torch import nn

from cnnzoo.engine import (Interrupted, NumericalError, TrainConfig, evaluate_checkpoint, load_checkpoint, load_config,
                           train)
from cnnzoo.files import load_file
from cnnzoo.engine.metrics import TIMING_COLUMNS, read_metrics
from cnnzoo.engine import trainer as trainer_module
from cnnzoo.engine.trainer import Trainer, classification_loss, evaluate, learnt_nothing


def config(tmp_path, **overrides):
    return load_config(None, {"out": str(tmp_path), "epochs": 2, "batch_size": 16, "lr": 0.05, "tensorboard": False,
                              **overrides})


def weights(run_dir):
    return load_checkpoint(run_dir / "last.ckpt")["model"]


def same_metrics(a, b):
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]  # noqa: E731
    return strip(read_metrics(a / "metrics.csv")) == strip(read_metrics(b / "metrics.csv"))


def test_run_folder_holds_everything_and_summary_line(tmp_path, one_thread):
    result = train(config(tmp_path, tensorboard=True, name="run"), data=synthetic())
    run = tmp_path / "run"
    assert result.run_dir == run and result.finished and result.epochs_done == 2
    assert re.fullmatch(rf"top1=\d+\.\d\d top5=\d+\.\d\d run={re.escape(str(run))}", result.summary())
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["test_top1"] == pytest.approx(result.top1, abs=1e-3) and rows[-1]["images_per_s"] > 0
    assert load_config(run / "config.yaml") == config(tmp_path, tensorboard=True, name="run")
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(run.glob("events.out.tfevents.*"))
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 2
    _, meta = load_file(run / "best.safetensors")
    assert meta["model"] == "resnet20" and meta["num_classes"] == 4
    assert meta["top1"] == pytest.approx(max(r["test_top1"] for r in rows), abs=1e-3)


def test_resume_after_one_epoch_equals_two_epochs(tmp_path, one_thread):
    """Random flips from the global RNG and stochastic depth: equal only if every RNG and the step are restored."""
    kw = dict(drop_path_rate=0.5, optimizer="sgd", warmup=0.5, schedule="cosine")
    train(config(tmp_path, name="straight", **kw), data=synthetic(flip=True))
    stopped = train(config(tmp_path, name="split", stop_after=1, **kw), data=synthetic(flip=True))
    assert not stopped.finished and stopped.epochs_done == 1
    torch.manual_seed(999)  # whatever happened in between must not matter
    resumed = train(config(tmp_path, name="split", **kw), data=synthetic(flip=True), resume=tmp_path / "split")
    assert resumed.finished
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert same_metrics(tmp_path / "straight", tmp_path / "split")


def test_sigint_mid_epoch_checkpoints_and_resume_is_exact(tmp_path, one_thread):
    def interrupt(epoch, batch):
        if (epoch, batch) == (1, 1):
            signal.raise_signal(signal.SIGINT)

    train(config(tmp_path, name="straight"), data=synthetic(flip=True))
    with pytest.raises(Interrupted, match=r"SIGINT at step 5 .*--resume") as e:
        train(config(tmp_path, name="split"), data=synthetic(flip=True, hook=interrupt))
    assert e.value.exit_code == 130
    ckpt = load_checkpoint(tmp_path / "split" / "last.ckpt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 2, 5)  # mid-epoch, after the step it arrived in
    train(config(tmp_path, name="split"), data=synthetic(flip=True), resume=tmp_path / "split")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert same_metrics(tmp_path / "straight", tmp_path / "split")


def test_nan_loss_stops_naming_step_and_last_good_checkpoint(tmp_path, one_thread):
    run = tmp_path / "run"
    with pytest.raises(NumericalError) as e:
        train(config(tmp_path, name="run"), data=synthetic(nan_at_step=(1, 2)))
    message = str(e.value)
    assert "loss is nan at step 5 (epoch 2, batch 3)" in message
    assert f"last good checkpoint: {run / 'last.ckpt'}" in message
    assert e.value.exit_code != 0
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 1  # the folder is consistent: epoch 1 complete
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1]
    assert all(torch.isfinite(t).all() for t in weights(run).values())


def test_aux_heads_add_weighted_losses_and_main_head_scores():
    torch.manual_seed(0)
    main, a1, a2 = torch.randn(3, 8, 5).unbind(0)
    labels = torch.randint(0, 5, (8,))
    loss, logits = classification_loss((main, a1, a2), labels, nn.CrossEntropyLoss(), 0.3)
    expected = F.cross_entropy(main, labels) + 0.3 * (F.cross_entropy(a1, labels) + F.cross_entropy(a2, labels))
    assert torch.allclose(loss, expected) and logits is main
    plain, logits = classification_loss(main, labels, nn.CrossEntropyLoss(label_smoothing=0.1), 0.3)
    assert torch.allclose(plain, F.cross_entropy(main, labels, label_smoothing=0.1)) and logits is main


def aux_net(**kwargs):
    return TinyNet(aux=True, **kwargs)


def test_aux_model_trains_with_weighted_loss(tmp_path, one_thread):
    with registered(aux_net, input_size=(1, 8, 8), num_classes=4) as name:
        runs = {w: train(config(tmp_path, model=name, aux_weight=w, epochs=1, name=f"w{w}"), data=synthetic())
                for w in (0.0, 0.3)}
    first = {w: read_metrics(tmp_path / f"w{w}" / "metrics.csv")[0] for w in runs}
    assert first[0.0]["train_loss"] != first[0.3]["train_loss"]  # the aux loss is in the objective
    assert math.isfinite(runs[0.3].top1)


def test_grad_flow_logs_every_residual_block(tmp_path, one_thread):
    result = train(config(tmp_path, name="gf", drop_path_rate=0.5, grad_flow=True), data=synthetic())
    lines = (result.run_dir / "grad_flow.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "epoch" and len(header) == 1 + 9  # ResNet-20: 9 residual blocks
    assert header[1] == "layer1.0" and len(lines) == 3
    first_block = [float(line.split(",")[1]) for line in lines[1:]]
    assert all(v > 0 for v in first_block)  # p_1 = 0.94: ran in (nearly) every step
    assert (result.run_dir / "grad_flow.png").read_bytes()[:4] == b"\x89PNG"


def test_grad_flow_monitor_averages_only_steps_a_block_ran(one_thread):
    from cnnzoo import create_model
    from cnnzoo.engine.gradflow import GradFlowMonitor
    from cnnzoo.layers import seed_gates

    model = create_model("resnet20", num_classes=4, in_chans=1, drop_path_rate=0.5)
    monitor = GradFlowMonitor(model)
    block = model.layer3[2]  # p_L = 0.5
    seen = []
    for step in range(6):
        model.zero_grad(set_to_none=True)
        seed_gates(model, step)
        model(torch.randn(2, 1, 8, 8)).sum().backward()
        monitor.after_backward()
        grads = [p.grad for p in block.parameters() if p.grad is not None]
        if grads:
            seen.append(sum(g.abs().sum() for g in grads).item() / sum(g.numel() for g in grads))
    means = monitor.end_epoch()
    assert 0 < len(seen) < 6  # dropped in some steps
    assert means["layer3.2"] == pytest.approx(sum(seen) / len(seen))


def test_eval_reproduces_the_summary_and_ten_crops(tmp_path, one_thread):
    result = train(config(tmp_path, name="run"), data=synthetic())
    for path in (result.run_dir, result.run_dir / "last.ckpt"):
        scores = evaluate_checkpoint(path, data=synthetic(), device="cpu")
        assert (round(scores["top1"], 2), round(scores["top5"], 2)) == (round(result.top1, 2), round(result.top5, 2))
    best = evaluate_checkpoint(result.run_dir / "best.safetensors", data=synthetic(), device="cpu")
    assert best["top1"] == load_file(result.run_dir / "best.safetensors")[1]["top1"]

    class TenCrops:  # ten identical crops: the averaged softmax must score like the single image
        def __init__(self, loader):
            self.loader = loader

        def epoch(self, epoch, start_batch=0):
            for images, labels in self.loader.epoch(epoch):
                yield images[:, None].expand(-1, 10, -1, -1, -1), labels

    data = synthetic()
    model = Trainer(config(tmp_path, name="tmp"), data).net
    center = evaluate(model, data.test)
    ten = evaluate(model, TenCrops(data.test))
    assert ten["top1"] == center["top1"] and ten["top5"] == center["top5"]
    assert ten["loss"] == pytest.approx(center["loss"], rel=1e-4)


@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_models_train_in_channels_last_on_cpu_by_default(tmp_path, channels_last):
    """NHWC is the faster layout on oneDNN CPUs as on cuDNN (benchmarks/RESULTS.md, memory_format.py)."""
    assert TrainConfig().channels_last
    trainer = Trainer(config(tmp_path, model="resnet20", channels_last=channels_last), synthetic())
    weight = trainer.net.layer1[0].conv1.weight  # 16 x 16 x 3 x 3: the two layouts differ
    assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert trainer.channels_last == channels_last


def test_label_smoothing_reaches_the_loss(tmp_path):
    assert Trainer(config(tmp_path, label_smoothing=0.1), synthetic()).criterion.label_smoothing == 0.1


def inf_gradient_at(net, call):
    """Give the first parameter an infinite gradient in the ``call``-th backward pass (0-based)."""
    calls = []

    def hook(grad):
        calls.append(None)
        return torch.full_like(grad, float("inf")) if len(calls) - 1 == call else grad

    next(net.parameters()).register_hook(hook)
    return net


def finite(state):
    return all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t) and t.is_floating_point())


@pytest.mark.parametrize("overrides, saved_step", [
    ({"checkpoint_every": 1}, 4),  # a checkpoint after every step: the one after step 4 is refused
    ({"log_every": 100}, 3),  # found at the end of epoch 2: the checkpoint of epoch 1 stays
])
def test_inf_gradient_stops_and_no_checkpoint_holds_it(tmp_path, one_thread, overrides, saved_step):
    run = tmp_path / "run"
    trainer = Trainer(config(tmp_path, name="run", **overrides), data=synthetic())  # 3 steps an epoch
    inf_gradient_at(trainer.net, 4)  # the fifth step: epoch 2, batch 2
    with pytest.raises(NumericalError) as e:
        trainer.fit()
    assert "the gradients are not finite (norm inf) at step 4 (epoch 2, batch 2)" in str(e.value)
    assert f"last good checkpoint: {run / 'last.ckpt'}" in str(e.value) and e.value.exit_code != 0
    ckpt = load_checkpoint(run / "last.ckpt")
    assert ckpt["step"] == saved_step and finite(ckpt["model"])
    assert all(finite(s) for s in ckpt["optimizer"]["state"].values())  # the momentum buffers too


@pytest.mark.parametrize("accumulate, ema_decay", [(1, 0.0), (2, 0.9)])
def test_a_training_step_never_reads_a_value_from_the_device(tmp_path, one_thread, monkeypatch, accumulate,
                                                              ema_decay):
    """No .item(), float(), bool() or .tolist() of a tensor in the step (accumulating and averaging too): each
    would wait for a GPU."""
    trainer = Trainer(config(tmp_path, name="run", accumulate=accumulate, ema_decay=ema_decay, batch_size=8),
                      data=synthetic(batch_size=8))  # stochastic depth gates draw on the CPU
    batches = list(trainer.data.train.epoch(0))

    def sync(*args):
        raise AssertionError("the training step read a tensor's value on the host")

    for method in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, method, sync)
    trainer.model.train()
    for i in range(2):
        trainer.train_step(batches[i * accumulate:(i + 1) * accumulate])
    monkeypatch.undo()
    assert trainer.step == 2 and trainer.batch == 2 * accumulate and trainer.tally.n == 2 * accumulate * 8


def test_cli_exits_nonzero_naming_epoch_and_step_of_an_inf_gradient(tmp_path, capsys, standin_cli, one_thread):
    from cnnzoo.cli import main

    def inf_net(**kwargs):
        return inf_gradient_at(TinyNet(**kwargs), 4)

    with registered(inf_net, input_size=(1, 8, 8), num_classes=4):
        status = main(["train", "--model", "inf_net", "--out", str(tmp_path), "name=run", "--epochs", "3",
                       "tensorboard=false", "--batch-size", "16"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1  # a diverging run is the user's to fix (issue 15)
    assert "at step 4 (epoch 2, batch 2)" in err and "last good checkpoint" in err
    assert finite(load_checkpoint(tmp_path / "run" / "last.ckpt")["model"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a GPU")
@pytest.mark.parametrize("accumulate, ema_decay", [(1, 0.0), (2, 0.9)])
def test_a_training_step_on_cuda_never_synchronizes(tmp_path, accumulate, ema_decay):
    """torch's sync debug mode turns any host-device synchronization into an error: none in the step."""
    trainer = Trainer(config(tmp_path, name="run", device="cuda", accumulate=accumulate, ema_decay=ema_decay,
                             batch_size=8), data=synthetic(batch_size=8))
    batches = [tuple(t.cuda() for t in batch) for batch in trainer.data.train.epoch(0)][:accumulate]
    trainer.model.train()
    trainer.train_step(batches)  # the first step may allocate and set up kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.step == 4
    if ema_decay:
        ema = trainer.ema.state_dict()
        assert all(v.is_cuda for v in ema.values())
        assert not all(torch.equal(v, trainer.net.state_dict()[k]) for k, v in ema.items())


def fake_clock(monkeypatch, step_s: float) -> list[float]:
    """The trainer's clock, moved only by hand and by ``step_s`` per training step: ``clock[0] += s``."""
    clock = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock[0])
    step = Trainer.train_step

    def timed_step(self, group):
        step(self, group)
        clock[0] += step_s

    monkeypatch.setattr(Trainer, "train_step", timed_step)
    return clock


@pytest.mark.parametrize("data_s, step_s, warned", [(3.0, 1.0, True), (1.0, 3.0, True), (0.1, 1.0, False)])
def test_data_wait_is_the_share_of_time_spent_fetching_batches(tmp_path, one_thread, monkeypatch, capsys, data_s,
                                                                 step_s, warned):
    """Each batch takes data_s to arrive and each step step_s: the epoch's seconds, images/s and data wait follow
    exactly, and a data wait of 25 % (the second case) or more is pointed out with the remedy."""
    clock = fake_clock(monkeypatch, step_s)
    hook = lambda epoch, batch: clock.__setitem__(0, clock[0] + data_s)  # noqa: E731
    train(config(tmp_path, name="run", epochs=1, workers=3), data=synthetic(hook=hook))
    (row,) = read_metrics(tmp_path / "run" / "metrics.csv")
    assert row["epoch_seconds"] == pytest.approx(3 * (data_s + step_s))  # 48 images, batch 16: three steps
    assert row["images_per_s"] == pytest.approx(48 / (3 * (data_s + step_s)), rel=1e-5)
    pct = 100 * data_s / (data_s + step_s)
    assert row["data_wait_pct"] == pytest.approx(pct, rel=1e-5)
    out, err = capsys.readouterr()
    assert f"img/s  data {pct:.0f}%" in out
    assert (f"the model waited for data {pct:.0f}% of epoch 1's time" in err) is warned
    assert ("more decoding processes (workers, now 3) or images stored nearer img_size (8)" in err) is warned


def test_data_wait_carries_over_a_mid_epoch_resume(tmp_path, one_thread, monkeypatch):
    clock = fake_clock(monkeypatch, step_s=1.0)

    def slow_data(epoch, batch):
        clock[0] += 3.0
        if batch == 1:  # interrupted after the second step; the resumed run starts at the third batch
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(Interrupted):
        train(config(tmp_path, name="run", epochs=1), data=synthetic(hook=slow_data))
    train(config(tmp_path, name="run", epochs=1), data=synthetic(hook=slow_data), resume=tmp_path / "run")
    (row,) = read_metrics(tmp_path / "run" / "metrics.csv")
    assert (row["epoch_seconds"], row["data_wait_pct"]) == pytest.approx((12.0, 75.0))


def test_learnt_nothing_compares_with_a_uniform_guess_and_chance():
    assert learnt_nothing(math.log(10), 15.0, 10)  # the boundary: a uniform guess's loss, 1.5x chance
    assert not learnt_nothing(math.log(10) - 1e-6, 9.0, 10)  # below a uniform guess's loss
    assert not learnt_nothing(30.0, 15.1, 10)  # above 1.5x chance
    assert not learnt_nothing(5.0, 100.0, 1)  # one class: nothing to learn


def test_lenet5_at_the_default_rate_is_pointed_to_its_recipe_which_learns(tmp_path, one_thread, capsys):
    """LeNet-5's RBF output diverges at the default lr 0.1 (loss ~30 against ln 10): after epoch 2 the trainer says
    so and names the recipe, whose 20 epochs reach over 90 % on the embedded digits."""
    train(load_config(None, {"model": "lenet5", "epochs": 3, "out": str(tmp_path), "tensorboard": False}))
    err = capsys.readouterr().err
    assert err.count("learnt nothing") == 1
    assert "after epoch 2, lenet5 has learnt nothing (train loss " in err
    assert ", a uniform guess's ln 10 = 2.3; train top-1 " in err
    assert "its loss is far above a uniform guess's, so the learning rate 0.1 is likely too high" in err
    assert err.endswith("; its recipe: --config lenet5_digits\n")
    result = train(load_config("lenet5_digits", {"out": str(tmp_path), "tensorboard": False}))
    assert result.top1 > 90
    assert "learnt nothing" not in capsys.readouterr().err


@pytest.mark.parametrize("aux_weight, loss", [(None, "1.39"), (0.9, "2.63")])
def test_a_model_stuck_at_a_uniform_guess_is_told_apart_from_one_diverging(tmp_path, one_thread, capsys,
                                                                           aux_weight, loss):
    """Zero logits score exactly a uniform guess: a plateau, not a rate too high; so does an auxiliary head at
    chance, which adds aux_weight x ln C (1.9 ln C here, under the 2 ln C of "diverging"). No recipe trains it."""

    def constant_net(num_classes=4, in_chans=1, **kw):
        net = TinyNet(num_classes, in_chans, aux=aux_weight is not None)
        net.forward_head = lambda x, pre_logits=False: net.fc(x.mean((2, 3))) * 0
        return net

    with registered(constant_net, input_size=(1, 8, 8), num_classes=4) as name:
        train(config(tmp_path, model=name, epochs=2, **({"aux_weight": aux_weight} if aux_weight else {})),
              data=synthetic())
    err = capsys.readouterr().err
    assert f"after epoch 2, {name} has learnt nothing (train loss {loss}, a uniform guess's ln 4 = 1.39" in err
    assert err.endswith("it is stuck at a uniform guess: another learning rate than 0.05 or more epochs may move it\n")
