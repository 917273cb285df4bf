"""Exercise `advantages`: the group-relative advantage, the baseline GRPO uses instead of a critic.

GRPO (DeepSeekMath section 4.1; DeepSeek-R1 section 2.2.1) samples G answers to each
question and asks of each: was it better than its siblings? The group's own mean
reward is the baseline, so no value network is trained:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)

Write `group_advantages` below. It keeps the name and signature of
toyds.rl.grpo_loss.group_advantages, so your version drops into the library unchanged.

    toyds check advantages                                   # checks this file
    python examples/03_r1_zero.py --advantages workshop/exercises/advantages.py --no-learned-rm
                                                             # R1-Zero trained with your advantages (~4 min)

Notebook: notebooks/03_r1_zero.ipynb. About 20 minutes.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) for rewards (N,) laid out as N / group_size consecutive groups.

    scale="group": A_i = (r_i - mean_g) / (std_g + eps), std over the group with
    Bessel's correction (divide by G - 1); "batch": the std over the whole batch, the
    mean still the group's; "none": A_i = r_i - mean_g (Dr. GRPO). As in TRL, a NaN
    reward (a row no reward function could score) is left out of the statistics and
    gets advantage 0, and a group of equal rewards gives zeros, never NaN.

    Example: rewards [1, 0, 1, 0] in one group of 4: mean 0.5, std 0.577, so
    A = [0.866, -0.866, 0.866, -0.866].
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    N = rewards.shape[0]
    if rewards.dim() != 1 or group_size < 1 or N % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size; got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    if scale == "group" and group_size < 2:
        raise ValueError("scale='group' needs group_size >= 2 (a group of one has no spread)")
    # TODO 1. view the rewards as (N / G, G) floats: one row per question
    # TODO 2. A_i = r_i - mean_g, the mean over the group's scored (non-NaN) rows
    # TODO 3. unless scale == "none": divide by (std + eps), the group's std or the whole batch's
    # TODO 4. return shape (N,), with advantage 0 where the result is NaN
    raise NotImplementedError("write group_advantages: see the TODOs above")
