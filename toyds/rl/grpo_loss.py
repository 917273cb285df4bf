"""GRPO's maths as pure functions of tensors: group advantages, the clipped loss, the k3 KL.

Group Relative Policy Optimisation (DeepSeekMath, section 4.1; DeepSeek-R1, section
2.2.1) scores each of G sampled answers against its own group, so no critic is trained:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)            the advantage
    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)                per token
    L_t = -min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps_high) A_i) + beta KL_t
    KL_t = pi_ref / pi - log(pi_ref / pi) - 1                          (Schulman's k3, >= 0)

Names and meanings are TRL's GRPOTrainer's, so one maps onto the other: loss_type
"grpo" (mean over each completion, then over completions), "bnpo" (mean over the
batch's tokens), "dapo" (sum over tokens / the token count of the whole generation
batch on every rank, `num_items_in_batch`), "dr_grpo" (sum / (rows x
max_completion_length)); scale "group", "batch" or "none" (TRL's scale_rewards); a
row whose every reward is NaN is left out of its group's statistics and gets
advantage 0; `use_bias_correction_kl` weights k3 by the ratio. rl/grpo.py's trainer
calls these; tests/test_grpo.py checks each against numbers worked by hand.

Shapes: B completions (prompts x G) of T tokens, G group size.
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
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


def zero_signal_groups(rewards: torch.Tensor, group_size: int) -> int:
    """How many groups have all-equal rewards (advantage 0 for every member)."""
    r = rewards.view(-1, group_size)
    return int((r == r[:, :1]).all(1).sum())


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: exp(d) - d - 1 with d = ref - logp."""
    d = ref_logp - logp
    # KL_t = exp(ref - logp) - (ref - logp) - 1  (>= 0, and 0 where the two agree)
    return torch.exp(d) - d - 1


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip_eps: float = 0.2, clip_eps_high: float | None = None, loss_type: str = "grpo",
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, use_bias_correction_kl: bool = False,
                max_completion_length: int | None = None, num_items_in_batch: float | None = None,
                num_processes: int = 1) -> tuple[torch.Tensor, dict]:
    """The clipped GRPO objective, negated. logp, old_logp, ref_logp, mask (B, T); advantages (B,).

    max_completion_length is required by "dr_grpo" (its constant denominator);
    num_items_in_batch (completion tokens of the whole generation batch, summed over
    the num_processes ranks) by "dapo". Returns (loss, {"clip_frac", "kl", "ratio"}).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference model's log-probabilities)")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' divides by rows x max_completion_length: pass max_completion_length")
    if loss_type == "dapo" and num_items_in_batch is None:
        raise ValueError("loss_type='dapo' divides by the generation batch's token count: pass num_items_in_batch")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    m = mask.to(logp.dtype)  # (B, T)
    A = advantages[:, None]  # (B, 1), one advantage for every token of a completion
    # ratio_t = pi / pi_old = exp(logp - old_logp)
    ratio = torch.exp(logp - old_logp)
    # surrogate_t = min(ratio A, clip(ratio, 1 - eps, 1 + eps_high) A)
    surrogate = torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * A)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    # L_t = -surrogate_t + beta KL_t, the KL weighted by the ratio if asked (TRL's use_bias_correction_kl)
    token_loss = -surrogate + beta * (kl * ratio if use_bias_correction_kl else kl)  # (B, T)

    if loss_type == "grpo":  # mean over each completion's tokens, then over completions
        loss = ((token_loss * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":  # every token of this batch weighs the same
        loss = (token_loss * m).sum() / m.sum().clamp(min=1)
    elif loss_type == "dapo":  # every token of the generation batch, on every rank, weighs the same
        loss = (token_loss * m).sum() / max(num_items_in_batch / num_processes, 1e-8)
    else:  # "dr_grpo": a constant denominator, so length does not rescale the gradient
        loss = (token_loss * m).sum() / (logp.shape[0] * max_completion_length)

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clipped = ((ratio < 1 - clip_eps) & (A < 0)) | ((ratio > 1 + eps_high) & (A > 0))
        stats = {
            "clip_frac": float((clipped.to(m.dtype) * m).sum() / n),
            "kl": float((kl * m).sum() / n),
            "ratio": float((ratio * m).sum() / n),
        }
    return loss, stats
