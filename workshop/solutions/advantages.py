"""Solution to the `advantages` exercise: toyds.rl.grpo_loss's own code, unchanged (_nanstd, group_advantages).

    toyds check advantages --file workshop/solutions/advantages.py
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def _nanstd(x: torch.Tensor) -> torch.Tensor:
    """Sample std (Bessel's correction) over the last axis, ignoring NaN; NaN for fewer than 2 values."""
    n = (~x.isnan()).sum(-1, keepdim=True)
    return (((x - x.nanmean(-1, keepdim=True)) ** 2).nansum(-1, keepdim=True) / (n - 1)).sqrt()


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) for rewards (N,) laid out as N / group_size consecutive groups.

    scale="group": A_i = (r_i - mean_g) / (std_g + eps), std over the group with
    Bessel's correction; "batch": the std over the whole batch, the mean still the
    group's; "none": A_i = r_i - mean_g (Dr. GRPO). As in TRL, a NaN reward (a row
    no reward function could score) is left out of the statistics and gets
    advantage 0, and a group of equal rewards gives zeros, never NaN.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    N = rewards.shape[0]
    if rewards.dim() != 1 or group_size < 1 or N % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size; got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    if scale == "group" and group_size < 2:
        raise ValueError("scale='group' needs group_size >= 2 (a group of one has no spread)")
    r = rewards.float().view(-1, group_size)  # (N / G, G)
    # A_i = r_i - mean_g, the mean over the group's scored rows
    centred = r - r.nanmean(1, keepdim=True)
    if scale != "none":
        std = _nanstd(r) if scale == "group" else _nanstd(r.flatten()).expand(len(r), 1)  # (N / G, 1)
        # A_i = (r_i - mean_g) / (std + eps)
        centred = centred / (std + eps)
    # unscored rows, and groups with one scored row (no std), teach nothing
    return torch.nan_to_num(centred.flatten(), nan=0.0)
