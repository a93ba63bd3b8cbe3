"""``cnnzoo reproduce``: the papers' experiments by name, with reports that set the paper's figures beside ours."""

from .experiments import EXPERIMENTS, Experiment, Scale
from .report import write_index
from .runner import SCALES, describe, run

__all__ = ["EXPERIMENTS", "Experiment", "SCALES", "Scale", "describe", "run", "write_index"]
