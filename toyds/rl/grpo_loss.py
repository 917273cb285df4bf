"""GRPO's maths as pure functions of tensors: group advantages, the clipped loss, the k3 KL.

Group Relative Policy Optimisation (DeepSeekMath, section 4.1; DeepSeek-R1, section
2.2.1) scores each of G sampled answers against its own group, so no critic is trained:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)            the advantage
    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)                per token
    L_t = -min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps_high) A_i) + beta KL_t
    KL_t = pi_ref / pi - log(pi_ref / pi) - 1                          (Schulman's k3, >= 0)

The family, as TRL 1.16 computes it (w_t is the importance ratio, A the advantage):

    GSPO    importance_sampling_level="sequence": one w per completion, exp(mean_t log w_t)
    cispo   -clamp(w_t, max=eps_high).detach() * A * log pi_t   (the ratio weights, never stops, the gradient)
    sapo    -sigmoid(tau (w_t - 1)) * 4 / tau * A, tau = sapo_temperature_pos if A > 0 else _neg (a soft clip)
    delta   the unclipped term's w_t capped at delta too (two-sided clipping, INTELLECT-2)
    top_entropy_quantile q   only the top q of the batch's tokens by entropy carry the policy loss ("80/20")
    off_policy_mask_threshold d   a completion with A < 0 whose mean log(pi_old / pi) > d is dropped (V3.2)
    entropy_coef c   loss - c * mean entropy over the tokens the loss acts on

cispo is aggregated as dapo, sapo as grpo (TRL's choice). The masks multiply the policy
term only, never the KL term, as in TRL.

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

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo")
IMPORTANCE_LEVELS = ("token", "sequence")
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


def high_entropy_mask(entropies: torch.Tensor, mask: torch.Tensor, quantile: float) -> torch.Tensor:
    """(B, T) True where a real token's entropy is >= the batch's `quantile` quantile of real tokens' entropies."""
    real = entropies[mask.bool()].float()
    if real.numel() == 0:
        return torch.zeros_like(mask, dtype=torch.bool)
    return (entropies >= torch.quantile(real, quantile)) & mask.bool()


def off_policy_mask(advantages: torch.Tensor, logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                    threshold: float) -> torch.Tensor:
    """(B, 1) 1 to keep a completion, 0 to drop it: DeepSeek-V3.2's off-policy sequence mask.

    Dropped: A < 0 and the mean over its tokens of log pi_old - log pi > threshold (the
    policy has moved away from what sampled it, and the sample would push it further).
    """
    m = mask.to(logp.dtype)
    drift = ((old_logp - logp.detach()) * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
    return ((advantages[:, None] >= 0) | (drift <= threshold)).to(logp.dtype)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip_eps: float = 0.2, clip_eps_high: float | None = None, loss_type: str = "grpo",
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, use_bias_correction_kl: bool = False,
                max_completion_length: int | None = None, num_items_in_batch: float | None = None,
                num_processes: int = 1, importance_sampling_level: str = "token", delta: float | None = None,
                sapo_temperature_pos: float = 1.0, sapo_temperature_neg: float = 1.05,
                entropies: torch.Tensor | None = None, top_entropy_quantile: float = 1.0,
                off_policy_mask_threshold: float | None = None, entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The GRPO objective of `loss_type`, negated. logp, old_logp, ref_logp, mask, entropies (B, T); advantages (B,).

    max_completion_length is required by "dr_grpo" (its constant denominator);
    num_items_in_batch (completion tokens of the whole generation batch, summed over
    the num_processes ranks) by "dapo" and "cispo"; entropies by top_entropy_quantile < 1
    and entropy_coef. For cispo, clip_eps_high is the cap on the ratio itself (TRL's
    epsilon_high; TRL suggests values like 5). Returns (loss, {"clip_frac", "kl", "ratio",
    "entropy"?}).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if importance_sampling_level not in IMPORTANCE_LEVELS:
        raise ValueError(f"importance_sampling_level must be one of {IMPORTANCE_LEVELS}, got "
                         f"{importance_sampling_level!r}")
    if beta and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference model's log-probabilities)")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' divides by rows x max_completion_length: pass max_completion_length")
    if loss_type in ("dapo", "cispo") and num_items_in_batch is None:
        raise ValueError(f"loss_type={loss_type!r} divides by the generation batch's token count: pass num_items_in_batch")
    if (top_entropy_quantile < 1 or entropy_coef) and entropies is None:
        raise ValueError("top_entropy_quantile < 1 and entropy_coef need the per-token entropies")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    m = mask.to(logp.dtype)  # (B, T)
    A = advantages[:, None]  # (B, 1), one advantage for every token of a completion
    log_w = logp - old_logp  # log pi / pi_old per token
    if importance_sampling_level == "sequence":  # GSPO: log w = mean_t log w_t, one per completion (B, 1)
        log_w = (log_w * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    ratio = torch.exp(log_w)  # w, (B, T) or (B, 1)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if use_bias_correction_kl:  # TRL's use_bias_correction_kl: k3 weighted by the ratio
        kl = kl * ratio

    if loss_type == "cispo":  # the clipped ratio, detached, weights the log-probability
        token_loss = -torch.clamp(ratio, max=eps_high).detach() * A * logp
    elif loss_type == "sapo":  # a soft gate sigmoid(tau (w - 1)) * 4 / tau instead of a hard clip
        tau = torch.where(A > 0, sapo_temperature_pos, sapo_temperature_neg)
        token_loss = -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * A
    else:  # surrogate_t = min(w A, clip(w, 1 - eps, 1 + eps_high) A), w capped at delta if asked
        unclipped = ratio if delta is None else torch.clamp(ratio, max=delta)
        token_loss = -torch.minimum(unclipped * A, torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * A)
    token_loss = token_loss.expand_as(logp)  # (B, T) at the sequence level too
    keep = m
    if off_policy_mask_threshold is not None:
        token_loss = token_loss * off_policy_mask(advantages, logp, old_logp, mask, off_policy_mask_threshold)
    if top_entropy_quantile < 1:
        keep = m * high_entropy_mask(entropies, mask, 1 - top_entropy_quantile).to(m.dtype)
        token_loss = token_loss * keep
    # L_t = policy_t + beta KL_t
    token_loss = token_loss + beta * kl

    if loss_type in ("grpo", "sapo"):  # mean over each completion's tokens, then over completions
        loss = ((token_loss * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":  # every token of this batch weighs the same
        loss = (token_loss * m).sum() / m.sum().clamp(min=1)
    elif loss_type in ("dapo", "cispo"):  # every token of the generation batch, on every rank, weighs the same
        loss = (token_loss * m).sum() / max(num_items_in_batch / num_processes, 1e-8)
    else:  # "dr_grpo": a constant denominator, so length does not rescale the gradient
        loss = (token_loss * m).sum() / (logp.shape[0] * max_completion_length)
    if entropy_coef:  # an entropy bonus: the mean entropy over the tokens the loss acts on
        loss = loss - entropy_coef * (entropies * keep).sum() / keep.sum().clamp(min=1)

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        r = ratio.expand_as(logp)
        if loss_type == "cispo":
            clipped = (r > eps_high) & (A > 0)  # TRL counts the cap on positive advantages
        else:
            clipped = ((r < 1 - clip_eps) & (A < 0)) | ((r > 1 + eps_high) & (A > 0))
        stats = {
            "clip_frac": float((clipped.to(m.dtype) * m).sum() / n),
            "kl": float((kl * m).sum() / n),
            "ratio": float((r * m).sum() / n),
        }
        if entropies is not None:
            stats["entropy"] = float((entropies * m).sum() / n)
    return loss, stats
