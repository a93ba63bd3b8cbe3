"""cnnzoo: the ImageNet-era convolutional networks, faithful to their papers."""

from . import models  # noqa: F401  (registers every family)
from .analysis import count_macs, count_params, min_input_size
from .files import load_file
from .registry import ModelCfg, create_model, list_models, model_cfg, register_model
from .weights import import_weights

__version__ = "0.1.0"
__all__ = [
    "ModelCfg",
    "count_macs",
    "count_params",
    "create_model",
    "import_weights",
    "list_models",
    "load_file",
    "min_input_size",
    "model_cfg",
    "register_model",
]
