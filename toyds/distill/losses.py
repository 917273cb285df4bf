"""Distillation's divergences as pure functions: forward KL, reverse KL and JSD, softened by tau.

White-box distillation (Hinton et al. 2015) matches the teacher's next-token
distribution P with the student's Q at every completion token:

    P = softmax(teacher / tau),  Q = softmax(student / tau)
    forward  KL(P || Q)                     Hinton: cover all of the teacher's mass
    reverse  KL(Q || P)                     MiniLLM (Gu et al. 2023): seek its modes
    jsd      beta KL(P || M) + (1 - beta) KL(Q || M),  M = beta P + (1 - beta) Q   (GKD)
    kd   = tau^2 * mean of the divergence over completion tokens   (tau^2 undoes the
           1 / tau^2 the softening puts on the gradients, so tau can change freely)

Against TRL (GKDTrainer's and DistillationTrainer's generalized JSD): the same jsd and
beta; TRL's beta = 0 is our "forward" and beta = 1 our "reverse" (at either end the
mixture formula is identically 0, so TRL special-cases them too), and TRL does not
multiply by tau^2. `generalized_jsd` is that loss with TRL's beta and temperature, for
a reader who arrives from TRL. distill/kd.py trains with kd_loss; tests/test_distill.py
checks both by hand.

Shapes: B batch, T time (positions), V vocabulary; any leading shape works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("forward", "reverse", "jsd")


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last axis, with 0 log 0 = 0."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), 0.0).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0, kind: str = "forward", beta: float = 0.5) -> torch.Tensor:
    """tau^2 * the mean divergence between teacher and student over positions where mask is True.

    Logits (B, T, V) (any leading shape works), mask (B, T). Positions where mask is
    False are never read, so padding may hold anything, even inf or NaN. The teacher
    is detached: only the student learns. Everything is computed from log_softmax,
    so logits of size 1e4 are fine. beta is read only for kind="jsd", where it must
    lie strictly between 0 and 1: at either end M equals P or Q and the divergence
    is identically 0 (use "forward" or "reverse" for those limits instead).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if kind == "jsd" and not (isinstance(beta, (int, float)) and 0 < beta < 1):
        raise ValueError(f"jsd needs 0 < beta < 1 (at 0 or 1 it is identically 0), got {beta!r}")
    if student_logits.shape != teacher_logits.shape or mask.shape != student_logits.shape[:-1]:
        raise ValueError(f"shapes do not match: student {tuple(student_logits.shape)}, teacher "
                         f"{tuple(teacher_logits.shape)}, mask {tuple(mask.shape)} (want (B, T, V), (B, T, V), (B, T))")
    keep = mask.bool()
    s = student_logits[keep].float()  # (n, V) the unmasked positions only
    t = teacher_logits.detach()[keep].float()  # (n, V)
    # log P = log_softmax(teacher / tau),  log Q = log_softmax(student / tau)
    logp, logq = F.log_softmax(t / temperature, -1), F.log_softmax(s / temperature, -1)
    if kind == "forward":
        div = _kl(logp, logq)  # (n,)
    elif kind == "reverse":
        div = _kl(logq, logp)
    else:
        # log M = logsumexp(log beta + log P, log(1 - beta) + log Q)
        logm = torch.logaddexp(math.log(beta) + logp, math.log(1 - beta) + logq)
        # jsd = beta KL(P || M) + (1 - beta) KL(Q || M)
        div = beta * _kl(logp, logm) + (1 - beta) * _kl(logq, logm)
    # kd = tau^2 * sum(div) / (unmasked positions)
    return temperature**2 * div.sum() / max(div.numel(), 1)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    beta: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """TRL's generalized JSD, its beta and temperature as TRL reads them: beta = 0 is KL(P || Q)
    (forward), beta = 1 is KL(Q || P) (reverse, TRL DistillationTrainer's default), in between
    the jsd above with M = beta P + (1 - beta) Q; the mean over unmasked tokens, no tau^2."""
    kind = kind_of_trl_beta(beta)
    return kd_loss(student_logits, teacher_logits, mask, temperature, kind, beta) / temperature**2


def kind_of_trl_beta(beta: float) -> str:
    """TRL's beta as kd_loss's kind: 0 "forward", 1 "reverse", in between "jsd" (with that beta)."""
    if not (isinstance(beta, (int, float)) and 0 <= beta <= 1):
        raise ValueError(f"beta must be a number in [0, 1] (0 forward KL, 1 reverse KL), got {beta!r}")
    return "forward" if beta == 0 else "reverse" if beta == 1 else "jsd"
