"""Exercise `grpo_loss`: the clipped GRPO objective with Schulman's k3 KL estimator.

Once each completion has its advantage A_i, GRPO makes its tokens more or less likely,
PPO-style: the ratio to the sampling policy is clipped so one batch cannot move the
policy far, and a KL term leashes it to a frozen reference model (DeepSeekMath eq. 3-4):

    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t) = exp(logp_t - old_logp_t)
    L_t = -min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps_high) A_i) + beta KL_t
    KL_t = pi_ref / pi - log(pi_ref / pi) - 1 = exp(d) - d - 1,  d = ref_logp_t - logp_t   (k3, >= 0)

then the token losses are aggregated by loss_type (TRL's meanings):
    "grpo"     mean over each completion's real tokens, then mean over completions
    "bnpo"     sum(L * mask) / sum(mask)
    "dapo"     sum(L * mask) / (num_items_in_batch / num_processes)
    "dr_grpo"  sum(L * mask) / (rows * max_completion_length)

Write `kl_k3` and `policy_loss` below; they keep the names and signatures of
toyds.rl.grpo_loss's, so your versions drop into the library unchanged. The signature
also carries the rest of TRL's family (GSPO, cispo, sapo, ...): the stretch goal.

    toyds check grpo_loss

Notebook: notebooks/03_r1_zero.ipynb. About 30 minutes.
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo")


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: exp(d) - d - 1 with d = ref - logp."""
    # TODO KL_t = exp(ref - logp) - (ref - logp) - 1
    raise NotImplementedError("write kl_k3")


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip_eps: float = 0.2, clip_eps_high: float | None = None, loss_type: str = "grpo",
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, use_bias_correction_kl: bool = False,
                max_completion_length: int | None = None, num_items_in_batch: float | None = None,
                num_processes: int = 1, importance_sampling_level: str = "token", delta: float | None = None,
                sapo_temperature_pos: float = 1.0, sapo_temperature_neg: float = 1.05,
                entropies: torch.Tensor | None = None, top_entropy_quantile: float = 1.0,
                off_policy_mask_threshold: float | None = None, entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The clipped GRPO objective, negated. logp, old_logp, ref_logp, mask (B, T); advantages (B,).

    logp carries the gradient; old_logp and ref_logp do not. max_completion_length is
    required by "dr_grpo", num_items_in_batch by "dapo". Returns (loss, {"clip_frac",
    "kl", "ratio"}).
    """
    # given: the rest of TRL's family (GSPO, cispo, sapo, delta, the masks, the entropy bonus) is the
    # stretch goal; toyds.rl.grpo_loss.policy_loss has them, with TRL's meanings
    family = dict(importance_sampling_level=(importance_sampling_level, "token"), delta=(delta, None),
                  top_entropy_quantile=(top_entropy_quantile, 1.0), entropy_coef=(entropy_coef, 0.0),
                  off_policy_mask_threshold=(off_policy_mask_threshold, None))
    if loss_type in ("cispo", "sapo") or any(v != default for v, default in family.values()):
        raise NotImplementedError("the stretch goal: write GSPO, cispo, sapo, delta and the masks too")
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
    # TODO 1. ratio (B, T) = exp(logp - old_logp)
    # TODO 2. surrogate (B, T) = min(ratio A, clip(ratio, 1 - clip_eps, 1 + eps_high) A)
    # TODO 3. kl (B, T) = kl_k3(logp, ref_logp) if ref_logp is given, else zeros
    # TODO 4. token_loss = -surrogate + beta * kl   (kl * ratio if use_bias_correction_kl)
    # TODO 5. loss = the aggregation loss_type names (see the module docstring), real tokens only
    raise NotImplementedError("write policy_loss: see the TODOs above")

    # given: the statistics the trainer logs (they read your ratio and kl)
    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clipped = ((ratio < 1 - clip_eps) & (A < 0)) | ((ratio > 1 + eps_high) & (A > 0))
        stats = {
            "clip_frac": float((clipped.to(m.dtype) * m).sum() / n),
            "kl": float((kl * m).sum() / n),
            "ratio": float((ratio * m).sum() / n),
        }
    return loss, stats
