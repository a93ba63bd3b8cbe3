"""Local response normalisation across channels, with the constant written as Krizhevsky et al. write it.

AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012, Section 3.3) normalises
each activation by its n neighbouring channels at the same position::

    b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2) ** beta

with k = 2, n = 5, alpha = 1e-4, beta = 0.75. Here ``alpha`` multiplies the
plain sum of squares, as in that formula. Caffe's LRN layer and
``torch.nn.LocalResponseNorm`` multiply the *mean* instead (they divide alpha
by n), so the same printed alpha is n times weaker there: Caffe's
``local_size: 5, alpha: 1e-4`` is ``LocalResponseNorm(5, alpha=2e-5)`` here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN, ``alpha`` applied to the sum of squares (the AlexNet paper's formula).

    Args:
        size: n, the number of channels in the window (centred; zero-padded at the ends).
        alpha: weight of the window's sum of squares (not of its mean, unlike torch and Caffe).
        beta: exponent.
        k: additive constant.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        # torch's kernel divides alpha by size; multiply it back to get the sum convention.
        return F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha} (on the sum), beta={self.beta}, k={self.k}"
