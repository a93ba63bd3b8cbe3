"""One module per paper family; importing them registers their models."""

from . import inception_resnet  # noqa: F401
from . import polynet  # noqa: F401
from . import resnet  # noqa: F401
