"""Solution to the `grpo_loss` exercise: toyds.rl.grpo_loss's own code, unchanged (kl_k3, policy_loss).

    toyds check grpo_loss --file workshop/solutions/grpo_loss.py
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


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
