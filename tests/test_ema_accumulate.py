"""Two recipe pieces of the trainer: Polyak averaging of the weights (``ema_decay``) and gradient accumulation
(``accumulate``)."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from standin_data import TinyNet, one_thread, registered, synthetic  # noqa: F401  (fixtures)
from torch import nn

from cnnzoo.engine import ConfigError, Interrupted, evaluate_checkpoint, load_checkpoint, load_config, train
from cnnzoo.engine import trainer as trainer_module
from cnnzoo.engine.distributed import World
from cnnzoo.engine.ema import WeightAverage
from cnnzoo.engine.metrics import COLUMNS, TIMING_COLUMNS, read_metrics
from cnnzoo.engine.trainer import Trainer, load_trained, step_seed
from cnnzoo import create_model
from cnnzoo.files import load_file


def config(tmp_path, **overrides):
    return load_config(None, {"out": str(tmp_path), "epochs": 2, "batch_size": 16, "lr": 0.05, "tensorboard": False,
                              **overrides})


class TinyBNNet(TinyNet):
    """TinyNet with a BatchNorm after its convolution: batch statistics, the one thing accumulation changes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bn = nn.BatchNorm2d(8)

    def forward_features(self, x):
        return torch.relu(self.bn(self.body(x)))


def tiny(**kwargs):
    return TinyNet(**kwargs)


def tiny_bn(**kwargs):
    return TinyBNNet(**kwargs)


def params(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------- gradient accumulation

def one_step(tmp_path, model, accumulate, batch_size, freeze_bn=False):
    """The weights after one optimizer step over the first 16 training images, as ``accumulate`` batches."""
    trainer = Trainer(config(tmp_path, model=model, name=f"{model}-{accumulate}", accumulate=accumulate,
                             batch_size=batch_size), data=synthetic(batch_size=batch_size))
    images, labels = next(iter(synthetic(batch_size=16).train.epoch(0)))
    trainer.model.train()
    if freeze_bn:  # BatchNorm normalises with its running statistics: no batch statistics
        trainer.net.bn.eval()
    trainer.train_step(list(zip(images.split(batch_size), labels.split(batch_size))))
    assert trainer.step == 1 and trainer.batch == accumulate and trainer.tally.n == 16
    return params(trainer.net)


def test_accumulated_batches_step_as_one_batch_of_them_all(tmp_path, one_thread):
    """k batches of b with accumulate=k: the update of one batch of k x b (mean loss), up to float rounding."""
    with registered(tiny, input_size=(1, 8, 8), num_classes=4):
        start = Trainer(config(tmp_path, model="tiny", name="start"), data=synthetic()).net.state_dict()
        whole, quarters = one_step(tmp_path, "tiny", 1, 16), one_step(tmp_path, "tiny", 4, 4)
    assert max_difference(whole, start) > 1e-3  # the step moved the weights
    assert max_difference(whole, quarters) < 1e-6


def test_with_batchnorm_accumulation_differs_only_through_batch_statistics(tmp_path, one_thread):
    """Training-mode BatchNorm normalises each batch of 4 by its own statistics, so the step differs from a batch
    of 16; with BatchNorm normalising by its running statistics the two agree again."""
    with registered(tiny_bn, input_size=(1, 8, 8), num_classes=4):
        whole, quarters = one_step(tmp_path, "tiny_bn", 1, 16), one_step(tmp_path, "tiny_bn", 4, 4)
        assert max_difference(whole, quarters) > 1e-4
        whole, quarters = (one_step(tmp_path, "tiny_bn", 1, 16, freeze_bn=True),
                           one_step(tmp_path, "tiny_bn", 4, 4, freeze_bn=True))
        assert max_difference(whole, quarters) < 1e-6


def test_lenet5_accumulating_two_batches_trains_as_batches_twice_as_large(tmp_path, one_thread):
    """LeNet-5 has no BatchNorm: two epochs with batches of 8 and accumulate=2 end with the weights, the
    step count and the scores of batches of 16 (the loader orders the data the same way)."""
    kw = dict(model="lenet5", momentum=0.9, warmup=0.5, schedule="cosine")
    train(config(tmp_path, name="big", batch_size=16, **kw), data=synthetic(batch_size=16, size=32))
    train(config(tmp_path, name="acc", batch_size=8, accumulate=2, **kw), data=synthetic(batch_size=8, size=32))
    big, acc = (load_checkpoint(tmp_path / name / "last.ckpt") for name in ("big", "acc"))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in create_model("lenet5").modules())
    assert big["step"] == acc["step"] == 6  # 2 epochs x 48 / 16
    assert max_difference(big["model"], acc["model"]) < 1e-5
    for a, b in zip(*(read_metrics(tmp_path / name / "metrics.csv") for name in ("big", "acc"))):
        assert a["lr"] == b["lr"] and a["train_top1"] == b["train_top1"] and a["test_top1"] == b["test_top1"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_an_epochs_batches_too_few_for_a_step_are_never_read(tmp_path, one_thread):
    """48 images in batches of 16 are 3 batches: with accumulate=2 one step per epoch, the third batch left out
    (as a loader leaves out a short batch); the schedule counts those steps."""
    read = []
    data = synthetic(batch_size=16, hook=lambda epoch, batch: read.append((epoch, batch)))
    trainer = Trainer(config(tmp_path, name="run", accumulate=2, warmup=0, schedule="linear"), data=data)
    trainer.fit()
    assert read == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert trainer.step == 2 and trainer.steps_per_epoch == 1
    assert trainer.scheduler.lr_lambdas[0].total == 2  # the linear schedule reaches min_lr at the last step
    assert [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.csv")] == [0.05, 0.025]
    with pytest.raises(ConfigError, match="accumulate 4 is more than the 3 batches of an epoch"):
        Trainer(config(tmp_path, name="too_many", accumulate=4), data=synthetic(batch_size=16))


def test_each_batch_of_a_step_draws_its_own_gates(tmp_path, one_thread, monkeypatch):
    """Stochastic depth is seeded per batch (step x accumulate + the batch within the step): distinct seeds,
    and without accumulation the step's own seed as before."""
    seeds = []
    monkeypatch.setattr(trainer_module, "seed_gates", lambda net, seed: seeds.append(seed))
    for accumulate in (1, 2):
        seeds.clear()
        trainer = Trainer(config(tmp_path, name=f"run{accumulate}", accumulate=accumulate, drop_path_rate=0.5,
                                 seed=3), data=synthetic(batch_size=8))
        trainer.train_epoch(0)
        assert trainer.step == 6 // accumulate
        assert seeds == [step_seed(3, b) for b in range(6)]  # one seed per batch, all distinct
        assert len(set(seeds)) == 6


def test_sigint_inside_a_step_checkpoints_after_it_and_resume_is_exact(tmp_path, one_thread):
    """A signal during a step's first batch is handled after the step's last: the checkpoint never holds half a
    step; resuming continues exactly (stochastic depth, random flips, accumulation and averaging)."""
    def interrupt(epoch, batch):
        if (epoch, batch) == (1, 2):
            signal.raise_signal(signal.SIGINT)

    kw = dict(accumulate=2, batch_size=8, ema_decay=0.8, drop_path_rate=0.5)
    train(config(tmp_path, name="straight", **kw), data=synthetic(batch_size=8, flip=True))
    with pytest.raises(Interrupted, match=r"SIGINT at step 5 "):
        train(config(tmp_path, name="split", **kw), data=synthetic(batch_size=8, flip=True, hook=interrupt))
    ckpt = load_checkpoint(tmp_path / "split" / "last.ckpt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 4, 5)  # 3 steps an epoch: 2 more of 2 batches
    train(config(tmp_path, name="split", **kw), data=synthetic(batch_size=8, flip=True), resume=tmp_path / "split")
    a, b = (load_checkpoint(tmp_path / name / "last.ckpt") for name in ("straight", "split"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "straight" / "metrics.csv")) == \
        strip(read_metrics(tmp_path / "split" / "metrics.csv"))


# ----------------------------------------------------------------- Polyak averaging

def test_weight_average_is_the_closed_form_of_the_weights_it_saw():
    """e_n = d^n w_0 + (1 - d) sum_i d^(n-i) w_i for the parameters and BatchNorm's running statistics; the
    batch counter is copied."""
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    d, values = 0.75, [0.5, -1.0, 2.0, 3.0]  # every float tensor of the model is filled with w_i in turn

    def fill(value):
        with torch.no_grad():
            for t in [*net.parameters(), net[1].running_mean, net[1].running_var]:
                t.fill_(value)
        net[1].num_batches_tracked.fill_(int(value * 10))

    fill(values[0])
    ema = WeightAverage(net, d)
    for w in values[1:]:
        fill(w)
        ema.update(net)
    n = len(values) - 1
    expected = d**n * values[0] + (1 - d) * sum(d ** (n - i) * w for i, w in enumerate(values) if i)
    state = ema.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(state[key], torch.full_like(state[key], expected), atol=1e-6), key
    assert state["1.num_batches_tracked"].item() == 30
    assert net[0].weight[0, 0].item() == 3.0 and not ema.model.training  # the model itself is left as it is
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightAverage(net, 1.0)


def test_trainer_averages_after_every_step(tmp_path, one_thread):
    """Through the trainer: after n optimizer steps the average is the closed form of the weights after each."""
    d = 0.6
    with registered(tiny, input_size=(1, 8, 8), num_classes=4):
        trainer = Trainer(config(tmp_path, model="tiny", name="run", ema_decay=d, accumulate=2, batch_size=8),
                          data=synthetic(batch_size=8))
        seen = [params(trainer.net)]
        trainer.model.train()
        batches = trainer.data.train.epoch(0)
        for _ in range(3):
            trainer.train_step([next(batches), next(batches)])
            seen.append(params(trainer.net))
    n = len(seen) - 1
    for key, value in trainer.ema.state_dict().items():
        expected = d**n * seen[0][key] + (1 - d) * sum(d ** (n - i) * w[key] for i, w in enumerate(seen) if i)
        assert torch.allclose(value, expected, atol=1e-6), key
    assert max_difference(seen[-1], trainer.ema.state_dict()) > 1e-4  # the average lags the weights


def test_averaged_weights_are_evaluated_saved_and_printed(tmp_path, one_thread, capsys):
    result = train(config(tmp_path, name="run", ema_decay=0.5, eval_every=2, epochs=3), data=synthetic())
    run = tmp_path / "run"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS + ["ema_test_loss", "ema_test_top1", "ema_test_top5"]
    rows = read_metrics(run / "metrics.csv")
    assert rows[0]["ema_test_top1"] is None and rows[1]["ema_test_top1"] is not None  # evaluated at epoch 2, 3
    last = rows[-1]
    out = capsys.readouterr().out
    assert f"ema {last['ema_test_top1']:.2f}%" in out.splitlines()[-1]
    # ema.safetensors: the average as last evaluated, in the header style of best.safetensors
    state, meta = load_file(run / "ema.safetensors")
    ckpt = load_checkpoint(run / "last.ckpt")
    assert all(torch.equal(state[k], ckpt["ema"][k]) for k in ckpt["ema"])
    assert not all(torch.equal(state[k], ckpt["model"][k]) for k in ckpt["model"])
    assert meta["model"] == "resnet20" and meta["epoch"] == 3 and meta["ema_decay"] == 0.5
    assert meta["top1"] == pytest.approx(last["ema_test_top1"], abs=1e-3)
    net, _ = load_trained(run / "ema.safetensors")  # a model like any other weight file
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in state)
    scores = evaluate_checkpoint(run / "ema.safetensors", data=synthetic())  # the file scores what the run said
    assert scores["top1"] == pytest.approx(last["ema_test_top1"], abs=1e-3)
    assert scores["loss"] == pytest.approx(last["ema_test_loss"], rel=1e-4)
    assert result.top1 == pytest.approx(last["test_top1"], abs=1e-3)  # the summary stays the raw weights'


def test_decay_zero_averages_nothing_and_writes_the_usual_files(tmp_path, one_thread):
    trainer = Trainer(config(tmp_path, name="run", epochs=1), data=synthetic())
    trainer.fit()
    run = tmp_path / "run"
    assert trainer.ema is None and not (run / "ema.safetensors").exists()
    assert (run / "metrics.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert load_checkpoint(run / "last.ckpt")["ema"] is None


def test_resume_gives_the_average_of_an_uninterrupted_run(tmp_path, one_thread):
    kw = dict(ema_decay=0.9, drop_path_rate=0.5)
    train(config(tmp_path, name="straight", **kw), data=synthetic(flip=True))
    train(config(tmp_path, name="split", stop_after=1, **kw), data=synthetic(flip=True))
    torch.manual_seed(999)
    train(config(tmp_path, name="split", **kw), data=synthetic(flip=True), resume=tmp_path / "split")
    a, b = (load_checkpoint(tmp_path / name / "last.ckpt") for name in ("straight", "split"))
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    (sa, ma), (sb, mb) = (load_file(tmp_path / name / "ema.safetensors") for name in ("straight", "split"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and ma == mb


def test_averaging_switched_on_at_resume_starts_from_the_restored_weights(tmp_path, one_thread):
    train(config(tmp_path, name="run", stop_after=1), data=synthetic())
    trainer = Trainer(config(tmp_path, name="run", ema_decay=0.9), data=synthetic(), resume=tmp_path / "run")
    assert all(torch.equal(v, trainer.net.state_dict()[k]) for k, v in trainer.ema.state_dict().items())


# ----------------------------------------------------------------- config

@pytest.mark.parametrize("key, value, valid", [("ema_decay", 1.0, "[0, 1)"), ("ema_decay", -0.1, "[0, 1)"),
                                               ("accumulate", 0, ">= 1")])
def test_out_of_range_values_are_one_line_config_errors(key, value, valid):
    with pytest.raises(ConfigError) as e:
        load_config(None, {key: value})
    assert str(e.value) == f"config key {key!r} is out of range: got {value!r}, valid {valid}"


# ----------------------------------------------------------------- DDP

class SyncRecorder(nn.Module):
    """Stands in for DistributedDataParallel: records, for each forward, whether it ran inside ``no_sync``."""

    def __init__(self, net):
        super().__init__()
        self.net, self.local, self.forwards = net, False, []

    def forward(self, x):
        self.forwards.append("local" if self.local else "all-reduce")
        return self.net(x)

    @contextlib.contextmanager
    def no_sync(self):
        self.local = True
        try:
            yield
        finally:
            self.local = False


def test_under_ddp_only_the_last_batch_of_a_step_all_reduces(tmp_path, one_thread):
    trainer = Trainer(config(tmp_path, name="run", accumulate=3, batch_size=8), data=synthetic(batch_size=8))
    trainer.world, trainer.model = World(size=2), SyncRecorder(trainer.net)
    trainer.model.train()
    batches = trainer.data.train.epoch(0)
    for _ in range(2):
        trainer.train_step([next(batches) for _ in range(3)])
    assert trainer.model.forwards == ["local", "local", "all-reduce"] * 2



@pytest.mark.heavy
def test_two_process_gloo_accumulation_and_average_equal_one_process(tmp_path):
    """Under DDP the non-final batches of a step skip the all-reduce (no_sync), and the average is of the
    unwrapped model: 2 ranks x 2 batches of 8 equal one process with batches of 32."""
    runner = Path(__file__).with_name("standin_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    args = ["train", "--model", "tiny_cnn", "--epochs", "2", "--lr", "0.1", "--device", "cpu", "ema_decay=0.5",
            "tensorboard=false", "name=run"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for d, launch, extra in (("two", torchrun, ["--batch-size", "16", "accumulate=2"]),
                             ("one", [sys.executable], ["--batch-size", "32"])):
        done = subprocess.run([*launch, str(runner), *args, *extra, "--out", str(tmp_path / d)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = (load_checkpoint(tmp_path / d / "run" / "last.ckpt") for d in ("one", "two"))
    assert a["step"] == b["step"] == 2  # 48 images: one step of 32 an epoch
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=1e-5), (part, k)
