"""Training and evaluation engine: config, optimizers and schedules, checkpoints, the loop, DDP."""

from .checkpoint import CheckpointError, WriteError, load_checkpoint, load_file, read_weights, save_weights
from .config import ConfigError, TrainConfig, load_config
from .optim import RMSpropTF, Schedule, build_optimizer, build_scheduler
from .trainer import (Interrupted, NumericalError, Result, TrainingStopped, evaluate, evaluate_checkpoint,
                      load_trained, resume_config, train)

__all__ = [
    "CheckpointError", "ConfigError", "Interrupted", "NumericalError", "RMSpropTF", "Result", "Schedule",
    "TrainConfig", "TrainingStopped", "build_optimizer", "build_scheduler", "evaluate", "evaluate_checkpoint",
    "WriteError", "load_checkpoint", "load_config", "load_file", "load_trained", "read_weights", "resume_config", "save_weights", "train",
]
