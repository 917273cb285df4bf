"""Solution to the `grpo_loss` exercise: toyds.rl.grpo_loss's own code, unchanged (kl_k3, policy_loss,
and the two masks policy_loss uses).

    toyds check grpo_loss --file workshop/solutions/grpo_loss.py
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo")
IMPORTANCE_LEVELS = ("token", "sequence")


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
