"""Small building blocks shared by the attentions, the dense model and the mixture of experts.

RMSNorm (Zhang & Sennrich 2019) rescales a vector by its root mean square,
without LayerNorm's mean subtraction or bias; LLaMA and DeepSeek-V3 use it.

    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g

SwiGLU (Shazeer 2020) is the feed-forward both families use: two parallel
projections, one gated by SiLU, multiplied, then projected back.

    SwiGLU(x) = W2 (SiLU(W1 x) * (W3 x))

Rotary positions (Su et al. 2021) rotate channel pairs by position-dependent
angles (toyds/model.py explains them). They live here, not in model.py, because
both attentions use them: multi-head attention (model.py) on whole heads, and
Multi-head Latent Attention (mla.py) on its small rotary part.

The dense model uses one SwiGLU as its feed-forward; the mixture of experts
(`toyds/moe.py`) uses many narrow ones as its experts. Names follow DeepSeek-V3's
`inference/model.py` (w1, w2, w3), so a reader can hold the two side by side.

Shapes: the leading dimensions are free, D is the model width, H the hidden
width of the feed-forward, hs the width rotated by rotary positions.
"""

from __future__ import annotations

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


def rope_tables(hs: int, n_pos: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    # theta_i = base^(-2i / hs), one angle per channel pair
    theta = base ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), theta)  # (n_pos, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (n_pos, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x_rot = x * cos(m theta) + rotate_half(x) * sin(m theta), x (..., T, hs), cos/sin (T, hs)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin
