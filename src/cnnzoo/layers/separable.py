"""Depthwise separable convolution (Chollet 2017, arXiv 1610.02357, Section 2; Howard et al. 2017, arXiv 1704.04861)."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


class SeparableConv2d(nn.Module):
    """A depthwise k x k convolution (one filter per input channel), then a pointwise 1x1 convolution.

    The two are linear and back to back, as in Xception and Keras's
    ``SeparableConv2D``: the paper found that no non-linearity between them
    trains best (Fig. 10). ``mid_act_layer`` (e.g. ``nn.ReLU``, ``nn.ELU``)
    inserts one, for the paper's ablation. No biases: a batch norm follows.

    MobileNet (Howard et al. 2017, Fig. 3) normalises and rectifies between
    the two: ``mid_norm_layer=nn.BatchNorm2d, mid_act_layer=nn.ReLU`` gives its
    depthwise conv -> BN -> ReLU -> pointwise conv (the BN and ReLU after the
    pointwise conv belong to the caller, as Xception's BN does).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        mid_act_layer: Callable[..., nn.Module] | None = None,
        mid_norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation, groups=in_chs, bias=False)
        self.mid_norm = mid_norm_layer(in_chs) if mid_norm_layer is not None else nn.Identity()
        self.mid_act = mid_act_layer(inplace=True) if mid_act_layer is not None else nn.Identity()
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.mid_act(self.mid_norm(self.depthwise(x))))
