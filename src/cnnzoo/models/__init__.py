"""One module per paper family; importing them registers their models."""

from . import resnet  # noqa: F401
from . import googlenet  # noqa: F401
from . import xception  # noqa: F401
