"""Depthwise separable convolution (Chollet 2017, arXiv 1610.02357, Section 2)."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


class SeparableConv2d(nn.Module):
    """A depthwise k x k convolution (one filter per input channel), then a pointwise 1x1 convolution.

    The two are linear and back to back, as in Xception and Keras's
    ``SeparableConv2D``: the paper found that no non-linearity between them
    trains best (Fig. 10). ``mid_act_layer`` (e.g. ``nn.ReLU``, ``nn.ELU``)
    inserts one, for the paper's ablation. No biases: a batch norm follows.
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
    ):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation, groups=in_chs, bias=False)
        self.mid_act = mid_act_layer(inplace=True) if mid_act_layer is not None else nn.Identity()
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.mid_act(self.depthwise(x)))
