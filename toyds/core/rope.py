"""Rotary positions: where a token is, written into its queries and keys by rotation.

Rotary position embedding (Su et al. 2021, RoFormer) rotates each pair of query and
key channels by an angle proportional to the token's position m, so the score
q_m . k_n depends on the offset m - n only, never on where a sequence starts:

    theta_i = base^(-2i / hs),  x_rot = x * cos(m theta) + rotate_half(x) * sin(m theta)

Both attentions use it: multi-head attention (model.py) rotates whole heads, and
Multi-head Latent Attention (mla.py, DeepSeek-V2 section 2.1.3) only its small
decoupled rotary part. Packed training rows (toyds/train/supervised.py) restart the position
at each sequence they hold: `segment_layout` gives the positions and the mask.

How the toy differs from DeepSeek-V3: channel i is paired with channel i + hs/2
("rotate half", as in GPT-NeoX and LLaMA's Hugging Face port), where V3's
`apply_rotary_emb` pairs neighbours (2i, 2i+1) as complex numbers. The two are the
same rotation on permuted channels; no YaRN extension to longer contexts.

Shapes: T positions, hs rotated width (even); leading dimensions of x are free.
"""

from __future__ import annotations

import torch


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


def segment_layout(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For packed rows: each token's position within its sequence (B, T), and the attention mask (B, 1, T, T).

    segments = [[0, 0, 0, 1, 1, -1]] -> positions [[0, 1, 2, 0, 1, 0]]; token t sees token
    s iff they are in the same sequence and s <= t (and always itself, so padding rows are not empty).
    """
    B, T = segments.shape
    t = torch.arange(T, device=segments.device)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]  # (B, T) True where a sequence begins
    first = torch.cummax(torch.where(starts, t, 0), dim=1).values  # (B, T) index of the sequence's first token
    same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
    # allowed[b, q, k] = same sequence and k <= q, or k == q
    allowed = same & (t[None, :] <= t[:, None]) | torch.eye(T, dtype=torch.bool, device=segments.device)
    return t - first, allowed[:, None]
