"""cnnzoo: the ImageNet-era convolutional networks, faithful to their papers."""

from . import hub, models  # noqa: F401  (models: registers every family; hub: the published weights)
from .analysis import count_macs, count_params, min_input_size
from .data.preprocess import create_transform, data_config
from .files import load_file
from .registry import ModelCfg, create_model, list_models, model_cfg, register_model
from .weights import import_weights

# ``cnnzoo.deploy`` is the function, as the README uses it. The module of the same name stays importable as
# ``from cnnzoo.deploy import export, load_checkpoint`` (Python finds it in sys.modules); only
# ``import cnnzoo.deploy as m`` would now give the function.
from .deploy import deploy  # noqa: E402  (after the submodule import above, so this name wins)

__version__ = "0.1.0"
__all__ = [
    "ModelCfg",
    "count_macs",
    "count_params",
    "create_model",
    "create_transform",
    "data_config",
    "deploy",
    "import_weights",
    "list_models",
    "load_file",
    "min_input_size",
    "model_cfg",
    "register_model",
]
