"""The papers' experiments that ``cnnzoo reproduce NAME`` runs: each claim, its figure, its arms and its scales.

An experiment trains a few *arms* (configurations that differ in the one thing
the paper varies) on the same data with the same seeds, and compares what the
paper reports with what was measured. Every arm is a set of ``TrainConfig``
overrides; a *scale* adds the overrides that make the run fit a budget:

- ``smoke``: seconds; a handful of batches of the embedded digits. It checks
  the pipeline end to end (CI runs it for every experiment), not the claim.
- ``cpu``: a real but reduced run (a smaller network, fewer images and
  epochs) on CIFAR-10, within about an hour on a 2-core CPU. ``reduced``
  says plainly what is smaller than the paper.
- ``paper``: the paper's own setting, for a GPU or a cluster (DDP through
  torchrun runs the same command).

The figures quoted are the papers'; what the reports call "ours" is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Scale:
    """How one scale runs an experiment."""

    reduced: str  # what is smaller than the paper, in plain words
    cost: str  # rough wall time on the machine the scale is meant for
    overrides: dict[str, Any]  # TrainConfig keys common to every arm
    train_images: int | None = None  # a fixed random subset of the training split (None: all of it)
    test_images: int | None = None  # likewise for the test split
    seeds: tuple[int, ...] = (0,)  # one run per arm and seed; the report shows the spread
    data: str | None = None  # the default --data of this scale (None: the user must give one)
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per arm, on top of the arm's own


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str  # authors, year, arXiv id
    claim: str  # what the paper claims, in one or two sentences
    figure: str  # where in the paper (figure or table)
    arms: dict[str, dict[str, Any]]  # arm name -> TrainConfig overrides that define it
    paper_error: dict[str, float]  # arm -> the paper's test error %, where it gives one
    scales: dict[str, Scale]
    baseline: str = ""  # the arm the others are compared with
    expect_lower: tuple[str, ...] = ()  # arms the paper says end with a lower error than the baseline
    paper_order: str = ""  # where the paper ranks the arms (best first), for the report's measured ranking


# The smoke scale of every trained experiment: the digits, a few batches, one or two epochs.
def _smoke(**overrides: Any) -> Scale:
    base = dict(data="digits", epochs=1, batch_size=8, lr=0.05, warmup=0, eval_every=1, tensorboard=False)
    return Scale("digits instead of the paper's data set, 16 training and 16 test images, one epoch: checks the "
                 "pipeline only", "seconds", {**base, **overrides}, train_images=16, test_images=16, data="digits")


# CIFAR-10 at its own 32x32 for the reduced runs.
_CIFAR_CPU = dict(augment="cifar", batch_size=128, optimizer="sgd", momentum=0.9, nesterov=True,
                  weight_decay=1e-4, schedule="multistep", gamma=0.1, warmup=0, eval_every=2, tensorboard=False)

EXPERIMENTS: dict[str, Experiment] = {}


def _add(exp: Experiment) -> None:
    EXPERIMENTS[exp.name] = exp


_add(Experiment(
    name="stochastic-depth",
    paper="Huang, Sun, Liu, Sedra, Weinberger 2016, Deep Networks with Stochastic Depth, arXiv 1603.09382",
    claim="Dropping whole residual blocks at random in training (linear decay to p_L = 0.5) trains about 25% faster "
          "and ends with a lower test error than the same network at constant depth; the early blocks keep larger "
          "gradients.",
    figure="Table 1 (CIFAR-10 ResNet-110: 6.41% constant depth vs 5.25% stochastic depth), Section 4 timing "
           "(75 s vs 60 s per epoch), Figure 7 (gradient magnitude of the first block)",
    arms={"constant depth": dict(drop_path_rate=0.0),
          "stochastic depth": dict(drop_path_rate=0.5, model_kwargs={"drop_path_mode": "batch",
                                                                     "drop_path_schedule": "linear"})},
    paper_error={"constant depth": 6.41, "stochastic depth": 5.25},
    baseline="constant depth",
    expect_lower=("stochastic depth",),
    scales={
        "smoke": _smoke(model="resnet20", grad_flow=True, epochs=2),
        "cpu": Scale("ResNet-56 instead of ResNet-110, 10,000 of the 50,000 training images, 16 epochs instead of "
                     "500 (lr x0.1 at epochs 8 and 12, the paper's 50%/75% points; the first epoch warms up from "
                     "lr 0.01, as He et al. did for ResNet-110), 2,000 test images",
                     "~25 min on 2 cores", dict(_CIFAR_CPU, model="resnet56", epochs=16, lr=0.1, milestones=[8, 12],
                                                warmup=1, grad_flow=True),
                     train_images=10_000, test_images=2_000),
        "paper": Scale("nothing: the paper's recipe (500 epochs, lr 0.1, x0.1 at 250 and 375, batch 128)",
                       "~1 GPU-day per arm", dict(_CIFAR_CPU, model="resnet110", epochs=500, lr=0.1,
                                                   milestones=[250, 375], grad_flow=True, eval_every=10)),
    },
))

_add(Experiment(
    name="xception-ablation",
    paper="Chollet 2016, Xception: Deep Learning with Depthwise Separable Convolutions, arXiv 1610.02357",
    claim="Residual connections are essential for convergence; with no activation between the depthwise and the "
          "pointwise convolution the network converges fastest and ends best (then ELU, then ReLU).",
    figure="Figure 9 (with and without residual connections), Figure 10 (intermediate activations)",
    arms={"xception": dict(model="xception"), "no residual": dict(model="xception_noresidual"),
          "ReLU between": dict(model="xception_mid_relu"), "ELU between": dict(model="xception_mid_elu")},
    paper_error={},
    baseline="no residual",
    expect_lower=("xception",),
    paper_order="xception (no activation between) < ELU between < ReLU between, all well ahead of no residual; "
                "the same order early in training (no activation converges fastest)",
    scales={
        "smoke": _smoke(img_size=71),
        "cpu": Scale("CIFAR-10 upsampled to 71x71 (the smallest input Xception takes) instead of ImageNet at 299, "
                     "4,000 training images, 4 epochs, SGD instead of the paper's schedule",
                     "~25 min on 2 cores", dict(_CIFAR_CPU, img_size=71, epochs=4, lr=0.045, batch_size=32,
                                                milestones=[3], weight_decay=1e-5, eval_every=1),
                     train_images=4_000, test_images=1_000),
        "paper": Scale("nothing: ImageNet at 299, SGD momentum 0.9, lr 0.045 x0.94 every 2 epochs",
                       "weeks of GPU time", dict(model="xception", epochs=100, lr=0.045, schedule="exponential",
                                                 gamma=0.94, step_size=2, weight_decay=1e-5, batch_size=256)),
    },
))

_POLY_KINDS = ("2way", "3way", "poly2", "poly3", "mpoly2", "mpoly3")

_add(Experiment(
    name="polyinception-ablation",
    paper="Zhang, Li, Loy, Lin 2016, PolyNet: A Pursuit of Structural Diversity in Very Deep Networks, arXiv 1611.05725",
    claim="Replacing the Inception-ResNet blocks of stage B by PolyInception modules lowers the error, and more so "
          "the more diverse the module (3-way, mpoly-3, poly-3 beat 2-way, mpoly-2, poly-2); stages A and C gain "
          "little.",
    figure="Figure 8 (the 3-6-3 ablation, stage B)",
    arms={"baseline": dict(model="polynet_363"),
          **{kind: dict(model=f"polynet_363_b_{kind}") for kind in _POLY_KINDS}},
    paper_error={},
    baseline="baseline",
    expect_lower=_POLY_KINDS,
    paper_order="every kind below the baseline, the more diverse kinds lowest: 3way, mpoly3 and poly3 ahead of "
                "2way, mpoly2 and poly2",
    scales={
        "smoke": _smoke(img_size=75),
        "cpu": Scale("stage B only, CIFAR-10 upsampled to 75x75 instead of ImageNet at 299, 2,000 training images, "
                     "3 epochs per arm (seven arms), SGD with a cosine schedule instead of RMSProp",
                     "~15 min on 2 cores",
                     dict(_CIFAR_CPU, img_size=75, epochs=3, lr=0.02, batch_size=32, schedule="cosine", eval_every=1),
                     train_images=2_000, test_images=500),
        "paper": Scale("nothing: ImageNet, RMSProp (decay 0.9, eps 1.0), stages A, B and C",
                       "weeks of GPU time", dict(epochs=50, optimizer="rmsprop_tf", lr=0.45, batch_size=512)),
    },
))

_add(Experiment(
    name="polynet-insertion",
    paper="Zhang, Li, Loy, Lin 2016, PolyNet, arXiv 1611.05725 (Section 6, initialization by insertion)",
    claim="A deeper PolyNet initialized by inserting new modules into a trained shallower one starts from the "
          "shallow net's function and trains well; the same net from random initialization trains slowly and "
          "converges poorly.",
    figure="Figure 10 (random initialization vs initialization by insertion)",
    # "insert_from" is the runner's: that arm starts from the named arm's trained weights by insertion.
    arms={"shallow 3-6-3": dict(model="polynet_363"), "random init": dict(model="polynet_6126"),
          "insertion": dict(model="polynet_6126", insert_from="shallow 3-6-3")},
    paper_error={},
    baseline="random init",
    expect_lower=("insertion",),
    scales={
        "smoke": _smoke(img_size=75),
        "cpu": Scale("6-12-6 from a 3-6-3 trained for the same budget, CIFAR-10 at 75x75, 3,000 images, 3 epochs, "
                     "SGD with a cosine schedule instead of RMSProp",
                     "~10 min on 2 cores", dict(_CIFAR_CPU, img_size=75, epochs=3, lr=0.02, batch_size=32,
                                                schedule="cosine", eval_every=1),
                     train_images=3_000, test_images=500),
        "paper": Scale("nothing: ImageNet, the Very Deep PolyNet from the 6-12-6", "weeks of GPU time",
                       dict(epochs=50, optimizer="rmsprop_tf", lr=0.45, batch_size=512)),
    },
))

_add(Experiment(
    name="googlenet-aux",
    paper="Szegedy et al. 2014, Going Deeper with Convolutions, arXiv 1409.4842",
    claim="The two auxiliary classifiers (loss weight 0.3, removed at inference) give a small gain, about 0.5% "
          "top-1.",
    figure="Section 5 (the control experiment on the auxiliary heads)",
    # The released layout (BN, adaptive pools in the aux heads) takes small inputs; the paper's heads need 224.
    arms={"without aux": dict(model="googlenet_bn", model_kwargs={"aux_logits": False}),
          "with aux": dict(model="googlenet_bn", model_kwargs={"aux_logits": True}, aux_weight=0.3)},
    paper_error={},
    baseline="without aux",
    expect_lower=("with aux",),
    scales={
        "smoke": _smoke(img_size=96),
        "cpu": Scale("GoogLeNet in the released layout (batch norm, adaptive pools in the auxiliary heads), CIFAR-10 "
                     "upsampled to 96x96 instead of ImageNet at 224, 5,000 training images, 4 epochs",
                     "~30 min on 2 cores (three seeds)", dict(_CIFAR_CPU, img_size=96, epochs=4, lr=0.01,
                                                               batch_size=32, milestones=[3], eval_every=1),
                     train_images=5_000, test_images=1_000, seeds=(0, 1, 2)),
        "paper": Scale("the released layout (batch norm) instead of the paper's; ImageNet, SGD momentum 0.9, "
                       "lr x0.96 every 8 epochs", "weeks of GPU time",
                       dict(epochs=250, lr=0.01, schedule="exponential", gamma=0.96, step_size=8)),
    },
))

# The overview trains nothing: it counts every classic network and sets the published errors beside the counts.
OVERVIEW = Experiment(
    name="cnn-overview",
    paper="AlexNet (2012) to PolyNet (2016) and the era's later landmarks",
    claim="Each design brought the error down, and the better designs did it with fewer parameters or operations "
          "(GoogLeNet: ~12x fewer parameters than AlexNet at a far lower error).",
    figure="the papers' ImageNet tables, gathered",
    arms={}, paper_error={}, scales={s: Scale("nothing: nothing is trained; counts come from the real modules",
                                              "seconds", {}) for s in ("smoke", "cpu", "paper")},
)
_add(OVERVIEW)
