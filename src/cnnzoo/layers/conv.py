"""Convolution building blocks shared by the families."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1, no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ConvBnAct(nn.Module):
    """Conv -> BatchNorm -> activation, the unit of the BN-era Inception networks.

    ``norm_layer(out_chs, eps=eps)`` builds the normalisation (BatchNorm by default).

    Attribute names (``conv``, ``bn``) follow timm's and torchvision's
    ``BasicConv2d`` so that their weights map by name.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        eps: float = 1e-3,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = norm_layer(out_chs, eps=eps)
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
