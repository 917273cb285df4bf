"""Small building blocks shared by the dense model and the mixture of experts.

RMSNorm (Zhang & Sennrich 2019) rescales a vector by its root mean square,
without LayerNorm's mean subtraction or bias; LLaMA and DeepSeek-V3 use it.

    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g

SwiGLU (Shazeer 2020) is the feed-forward both families use: two parallel
projections, one gated by SiLU, multiplied, then projected back.

    SwiGLU(x) = W2 (SiLU(W1 x) * (W3 x))

The dense model uses one SwiGLU as its feed-forward; the mixture of experts
(`toyds/moe/layer.py`) uses many narrow ones as its experts. Names follow DeepSeek-V3's
`inference/model.py` (w1, w2, w3), so a reader can hold the two side by side.

Shapes: the leading dimensions are free, D is the model width, H the hidden
width of the feed-forward.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    """The feed-forward of one dense layer, or of one expert. (..., D) -> (..., D)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate projection
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up projection
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # SwiGLU(x) = W2 (SiLU(W1 x) * (W3 x))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


@contextmanager
def evaluating(*modules: nn.Module):
    """Put modules in eval mode for a block, and restore each one's mode afterwards, even on an error."""
    was = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, w in zip(modules, was):
            m.train(w)
