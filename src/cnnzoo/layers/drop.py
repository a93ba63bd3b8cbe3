"""Stochastic depth (Huang et al. 2016, arXiv 1603.09382) that really skips dropped blocks.

During training each residual branch is kept with its survival probability
p_l; a dropped branch is replaced by the identity shortcut. In the default
``"batch"`` mode one gate is drawn per block per forward pass (per mini-batch,
as in the paper's code) and a closed gate never calls the branch, so neither
its forward nor its backward work is done: this is where the paper's ~25%
shorter training comes from. At evaluation every branch runs, scaled by p_l.

``inverted=True`` uses the other convention: an open gate divides the branch
by p_l during training and evaluation applies no scaling (the expected output
is the same; eval-time code is then free of p_l).

Multi-path modules (PolyNet's stochastic paths) give each path its own gate
and call ``open()`` (compute this path?) and ``weigh()`` (its contribution)
themselves, since a cascade may need a dropped path's output for a later one.

``"row"`` mode draws one gate per sample (timm's ``DropPath``, torchvision's
``StochasticDepth(mode="row")``): the branch is always computed for the whole
batch and then masked, so it regularises but saves no compute.

A network's stochastic-depth settings are one object, ``DropPathSpec`` (rate,
mode, schedule, inverted); a family turns it into its per-block gates with
``spec.gates(num_blocks, owner=model)``. ``create_model`` builds the spec from
the ``drop_path_rate / _mode / _schedule / _inverted`` keywords (timm's
``drop_path_rate`` included), in ``drop_path_from_keywords``.

The gates of a model draw from one random stream that the model owns
(``GateStream``: a seeded ``torch.Generator``, not torch's global one, so data
augmentation does not shift the gates, and not a buffer either: the model's
state_dict stays its weights). The training loop reseeds it each step
(``seed_gates(model, seed)``): under DDP every rank then drops the same blocks
and the gradients agree; ``gate_state`` / ``load_gate_state`` save and restore
it with a checkpoint. A gate built alone (as in the tests) has its own stream.

Gradient checkpointing (``torch.utils.checkpoint``, reentrant or not, of a
block, a stage or the whole model) works: the recomputation in backward gets
the gates of the forward pass (``StochasticDepth.gate`` says how). Each gate
ask draws one number from torch's global RNG to tell a recomputation from a
new call; that number shifts other users of the global RNG, which the
training checkpoint saves too, so resume stays exact.

Under ``torch.compile`` the Python branch on the gate is data-dependent, so
a compiled block graph-breaks at the gate (in "batch" mode only); the compiled
pieces on either side stay compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

Mode = Literal["batch", "row"]
Schedule = Literal["linear", "uniform", "linear0"]

# Is fx.symbolic_trace running? (Newer torch tells it from export's tracing; older torch has one flag for both.)
_fx = torch.fx._symbolic_trace
_symbolic_tracing = getattr(_fx, "is_fx_symbolic_tracing", _fx.is_fx_tracing)


def survival_probs(num_blocks: int, drop_rate: float, schedule: Schedule = "linear") -> list[float]:
    """p_l for blocks l = 1..L; ``drop_rate`` is 1 - p_L.

    linear: p_l = 1 - (l / L) * (1 - p_L), the paper's decay (first block kept
    most often, last block with p_L); uniform: p_l = p_L for every block;
    linear0: p_l = 1 - ((l - 1) / L) * (1 - p_L), the same line started one block
    earlier, so the first block is never dropped (EfficientNet's reference code).
    """
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_rate}")
    if schedule == "linear":
        return [1.0 - (l / num_blocks) * drop_rate for l in range(1, num_blocks + 1)]
    if schedule == "uniform":
        return [1.0 - drop_rate] * num_blocks
    if schedule == "linear0":
        return [1.0 - (l / num_blocks) * drop_rate for l in range(num_blocks)]
    raise ValueError(f"unknown drop_path_schedule {schedule!r}: use 'linear', 'uniform' or 'linear0'")


class GateStream:
    """The seeded random stream one model's gates draw from. Not a module, no tensor attribute: never in a state_dict.

    ``epoch`` counts reseeds and restores: a gate drawn before one is drawn again after it.
    """

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.epoch = 0

    @classmethod
    def of(cls, owner: nn.Module) -> GateStream:
        """``owner``'s stream (its ``gate_stream`` attribute), created on first use."""
        stream = owner.__dict__.get("gate_stream")
        if stream is None:
            stream = owner.__dict__["gate_stream"] = cls()
        return stream

    def draw(self) -> float:
        return torch.rand((), generator=self.generator).item()

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self.epoch += 1

    def state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state)
        self.epoch += 1


@dataclass(frozen=True)
class DropPathSpec:
    """Stochastic depth over a network's residual blocks (or paths): the one argument every residual family takes."""

    # The other fields left None take the family's convention (``gates``' keywords): "batch", "linear", not
    # inverted for the residual families (Huang et al.); "row", "linear0", inverted for EfficientNet's drop connect.
    rate: float = 0.0  # 1 - p_L, the drop probability of the last block; 0 = off
    mode: Mode | None = None  # "batch": one gate per block per call, a closed one skips the block; "row": per sample
    schedule: Schedule | None = None  # p_l over the blocks: "linear" (the paper's decay), "uniform", "linear0"
    inverted: bool | None = None  # scale open branches by 1/p_l in training instead of by p_l at evaluation

    def __post_init__(self):
        if self.mode is not None and self.mode not in ("batch", "row"):
            raise ValueError(f"unknown drop_path_mode {self.mode!r}: use 'batch' or 'row'")
        survival_probs(1, self.rate, self.schedule or "linear")  # checks the rate and the schedule

    def gates(self, num_blocks: int, owner: nn.Module | None = None, *, mode: Mode = "batch",
              schedule: Schedule = "linear", inverted: bool = False) -> list[StochasticDepth]:
        """One gate per block, p_l by the schedule, all drawing from ``owner``'s stream (``GateStream.of``).

        ``mode``, ``schedule``, ``inverted``: the family's convention, for the fields the spec leaves None.
        """
        mode = self.mode or mode
        inverted = inverted if self.inverted is None else self.inverted
        stream = GateStream.of(owner) if owner is not None and self.rate > 0 else None  # no gates: no stream
        return [StochasticDepth(p, mode, inverted, stream)
                for p in survival_probs(num_blocks, self.rate, self.schedule or schedule)]


_KEYWORDS = {"drop_path_rate": "rate", "drop_path_mode": "mode", "drop_path_schedule": "schedule",
             "drop_path_inverted": "inverted"}


def drop_path_from_keywords(kwargs: dict) -> dict:
    """``kwargs`` with the ``drop_path_*`` keywords turned into ``drop_path=DropPathSpec(...)`` (none given: unchanged)."""
    given = {field: kwargs[key] for key, field in _KEYWORDS.items() if key in kwargs}
    if not given:
        return kwargs
    if kwargs.get("drop_path") is not None:
        raise ValueError("give drop_path=DropPathSpec(...) or the drop_path_* keywords, not both")
    rest = {k: v for k, v in kwargs.items() if k not in _KEYWORDS}
    return {**rest, "drop_path": DropPathSpec(**given)}


def gate_streams(model: nn.Module) -> list[GateStream]:
    """The streams ``model``'s gates draw from (one per model built by a family), in module order."""
    streams: dict[int, GateStream] = {}
    for m in model.modules():
        if isinstance(m, StochasticDepth) and m.stream is not None:
            streams.setdefault(id(m.stream), m.stream)
    return list(streams.values())


def seed_gates(model: nn.Module, seed: int | None = None) -> None:
    """Reseed the gate stream(s) of ``model`` (the training loop: once per step, for DDP and exact resume)."""
    if seed is None or not isinstance(model, nn.Module):
        raise TypeError("seed_gates takes the model whose gates to reseed: seed_gates(model, seed)")
    for i, stream in enumerate(gate_streams(model)):
        stream.seed(seed + i)


def gate_state(model: nn.Module) -> list[Tensor]:
    """The state of ``model``'s gate streams, for a training checkpoint (not part of the state_dict)."""
    return [stream.state() for stream in gate_streams(model)]


def load_gate_state(model: nn.Module, state: list[Tensor] | Tensor | None) -> None:
    """Restore ``gate_state``; a checkpoint from before the model owned its stream holds one tensor."""
    if state is None:
        return
    for stream, s in zip(gate_streams(model), [state] if isinstance(state, Tensor) else state):
        stream.set_state(s)


class StochasticDepth(nn.Module):
    """Gates one residual branch: ``shortcut + branch(x)``, with the branch dropped at random in training."""

    def __init__(self, survival_prob: float = 1.0, mode: Mode = "batch", inverted: bool = False,
                 stream: GateStream | None = None):
        super().__init__()
        if mode not in ("batch", "row"):
            raise ValueError(f"unknown drop_path_mode {mode!r}: use 'batch' or 'row'")
        self.survival_prob = survival_prob
        self.mode = mode
        self.inverted = inverted
        self.stream = stream  # None: built alone; it makes its own stream when first needed
        self._call: tuple[int, int] | None = None  # the call whose gate ``_open`` holds (see ``gate``)

    def own_stream(self) -> GateStream:
        if self.stream is None:
            self.stream = GateStream()
        return self.stream

    def twin(self) -> StochasticDepth:
        """Another gate with the same settings and stream (a multi-path module's gate for each path)."""
        if self.survival_prob < 1.0:
            self.own_stream()  # the twins must share it
        return StochasticDepth(self.survival_prob, self.mode, self.inverted, self.stream)

    def gate(self) -> bool:
        """This block's gate for this call ("batch" mode): True means compute the branch.

        Each call draws from the model's stream, except the recomputation of a call
        by gradient checkpointing, which gets the gate of the call it recomputes:
        ``torch.utils.checkpoint`` restores torch's global RNG state before it
        recomputes (``preserve_rng_state``, the default), so a number drawn from the
        global RNG here identifies the call. Only that tag comes from the global RNG;
        the gate itself comes from the stream.
        """
        stream = self.own_stream()
        call = (stream.epoch, int(torch.randint(1 << 62, ()).item()))
        if call != self._call:
            self._open = stream.draw() < self.survival_prob
            self._call = call
        return self._open

    def open(self) -> bool:
        """Whether the branch runs in this pass: False only for a closed gate in "batch" training mode.

        Draws a gate exactly when one is needed, so multi-path modules that ask
        each path's gate in turn consume the generator as single blocks do.
        """
        if not self.training or self.survival_prob == 1.0 or self.mode == "row":
            return True
        if _symbolic_tracing():  # the traced graph would keep one draw forever
            raise RuntimeError("stochastic depth in 'batch' mode decides in Python whether a branch runs: a training-mode "
                               "graph cannot be traced; trace in eval mode, or build with drop_path_mode='row'")
        return self.gate()

    def scale(self, branch_out: Tensor) -> Tensor:
        """Scale an open branch: by p_l at eval (paper), or by 1/p_l in training (inverted)."""
        p = self.survival_prob
        if p == 1.0:
            return branch_out
        if self.training:
            return branch_out / p if self.inverted else branch_out
        return branch_out if self.inverted else branch_out * p

    def weigh(self, branch_out: Tensor) -> Tensor:
        """What an open branch adds to the sum: the per-sample mask in "row" training mode, then ``scale``."""
        if self.training and self.mode == "row" and self.survival_prob < 1.0:
            # One gate per sample; these need not agree across DDP ranks (each holds other samples).
            keep = branch_out.new_empty(branch_out.shape[0], *(1,) * (branch_out.ndim - 1))
            branch_out = branch_out * keep.bernoulli_(self.survival_prob)
        return self.scale(branch_out)

    def forward(self, shortcut: Tensor, branch: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``shortcut + branch(x)``; in "batch" training mode a closed gate returns ``shortcut`` without calling ``branch``."""
        if not self.open():
            return shortcut
        out = self.weigh(branch(x))
        # Without autograd (inference) the sum may overwrite the branch's fresh output, as torchvision's
        # `out += identity` does: one memory pass less per block.
        return shortcut + out if torch.is_grad_enabled() else out.add_(shortcut)

    def extra_repr(self) -> str:
        return f"survival_prob={self.survival_prob:.4f}, mode={self.mode}, inverted={self.inverted}"
