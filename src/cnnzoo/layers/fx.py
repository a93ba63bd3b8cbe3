"""``torch.fx`` symbolic tracing: timm's notrace registry, and shape checks that tracing keeps as one call.

A tracer cannot branch on a traced tensor's shape, which the fixed-size networks'
input checks do. ``expect_map_size`` does that check; a family that uses it calls
``torch.fx.wrap("expect_map_size")`` at its module level, so every tracer keeps it
as one call in the graph, run on real tensors. ``get_notrace_modules`` /
``get_notrace_functions`` give what a tracer's ``leaf_modules`` /
``autowrap_functions`` should hold (timm's names: code that traces timm models
with them traces ours the same way).
"""

from __future__ import annotations

from typing import Callable

import torch.fx
from torch import Tensor, nn

_LEAF_MODULES: set[type[nn.Module]] = set()
_AUTOWRAP_FUNCTIONS: set[Callable] = set()


def register_notrace_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: tracers keep this module as one call (a leaf) instead of tracing its forward."""
    _LEAF_MODULES.add(cls)
    return cls


def register_notrace_function(fn: Callable) -> Callable:
    """Decorator: list ``fn`` for tracers' ``autowrap_functions`` (call ``torch.fx.wrap`` on its name too)."""
    _AUTOWRAP_FUNCTIONS.add(fn)
    return fn


def get_notrace_modules() -> list[type[nn.Module]]:
    return list(_LEAF_MODULES)


def get_notrace_functions() -> list[Callable]:
    return list(_AUTOWRAP_FUNCTIONS)


@register_notrace_function
def expect_map_size(x: Tensor, size: tuple[int, int], message: str) -> Tensor:
    """``x`` itself if its maps are ``size``; else ValueError(``message`` with ``{got}`` filled in)."""
    if tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(message.format(got=f"{x.shape[-2]}x{x.shape[-1]}"))
    return x


torch.fx.wrap("expect_map_size")
