"""Optimizers and learning-rate schedules of the papers' recipes.

SGD (momentum, Nesterov, weight decay) is torch's. RMSProp comes in two
conventions: torch's (``eps`` added to the root: g / (sqrt(v) + eps)) and
TensorFlow's, which the Inception-v3/v4, Inception-ResNet and PolyNet papers
trained with (``eps`` inside the root: g / sqrt(v + eps), the mean square
starting at 1, the learning rate folded into the momentum buffer). With their
eps = 1.0 the two are far apart, so a TF recipe needs ``RMSpropTF``.

The schedule is one function of the iteration (``Schedule``), stepped after
every optimizer step; epoch-based milestones are converted with the number of
steps per epoch, so a resumed run lands on exactly the same learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .config import ConfigError, TrainConfig


class RMSpropTF(Optimizer):
    """RMSProp as TensorFlow's ``RMSPropOptimizer`` / ``ApplyRMSProp`` computes it.

    For each parameter w with gradient g (weight decay added to g as an L2 term)::

        ms  = decay * ms + (1 - decay) * g^2          # ms starts at 1, not 0
        mom = momentum * mom + lr * g / sqrt(ms + eps)
        w   = w - mom
    """

    def __init__(self, params, lr: float = 0.045, decay: float = 0.9, momentum: float = 0.9,
                 eps: float = 1.0, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or not 0.0 <= decay < 1.0:
            raise ValueError(f"RMSpropTF needs lr >= 0, eps >= 0 and decay in [0, 1): got {lr}, {eps}, {decay}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(g, ms.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> Optimizer:
    """The optimizer ``cfg.optimizer`` names, over ``model``'s parameters."""
    # Weight decay applies to every parameter, BatchNorm's and biases included, as in the papers' solvers.
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "rmsprop_tf":
        return RMSpropTF(params, lr=cfg.lr, decay=cfg.rmsprop_decay, momentum=cfg.momentum, eps=cfg.rmsprop_eps,
                         weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rmsprop_decay, momentum=cfg.momentum,
                                   eps=cfg.rmsprop_eps, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}: use sgd, rmsprop_tf or rmsprop")


class Schedule:
    """The learning-rate factor (x ``cfg.lr``) at each iteration: linear warmup, then the schedule's shape.

    A callable object, not a lambda, so ``LambdaLR.state_dict()`` stores its settings with the checkpoint.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        unit = steps_per_epoch if cfg.schedule_unit == "epoch" else 1
        self.kind = cfg.schedule
        self.total = max(1, cfg.epochs * steps_per_epoch)
        self.warmup = round(cfg.warmup * unit)
        self.warmup_start = cfg.warmup_start
        self.step_size = max(1, round(cfg.step_size * unit))
        self.milestones = sorted(round(m * unit) for m in cfg.milestones)
        self.gamma = cfg.gamma
        self.min_factor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
        if self.kind == "multistep" and not self.milestones:
            raise ConfigError("schedule 'multistep' needs milestones, e.g. milestones=[30,60,80]")

    def __call__(self, it: int) -> float:
        if it < self.warmup:
            return self.warmup_start + (1 - self.warmup_start) * it / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind in ("step", "exponential"):  # exponential: TF's staircase decay, Inception's x0.94 / 2 epochs
            return self.gamma ** (it // self.step_size)
        if self.kind == "multistep":
            return self.gamma ** sum(it >= m for m in self.milestones)
        if self.kind == "cosine":  # from the end of warmup to the last iteration
            t = (it - self.warmup) / max(1, self.total - self.warmup)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if self.kind == "linear":  # Caffe's "poly" policy with power 1 (SqueezeNet's released solver, ShuffleNet)
            t = (it - self.warmup) / max(1, self.total - self.warmup)
            return self.min_factor + (1 - self.min_factor) * (1 - min(t, 1.0))
        raise ConfigError(
            f"unknown schedule {self.kind!r}: use constant, step, multistep, exponential, cosine or linear")


def build_scheduler(cfg: TrainConfig, optimizer: Optimizer, steps_per_epoch: int) -> LambdaLR:
    """A per-iteration scheduler following ``Schedule``; call ``.step()`` after every optimizer step."""
    return LambdaLR(optimizer, Schedule(cfg, steps_per_epoch))
