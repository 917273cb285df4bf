"""Exercise `kd_loss`: distillation losses that match a teacher's next-token distributions.

DeepSeek-R1's small models learned from the big one's text (sequence-level
distillation). White-box distillation also matches the teacher's distributions,
softened by a temperature tau (Hinton et al. 2015):

    P = softmax(teacher / tau),  Q = softmax(student / tau)
    forward  KL(P || Q) = sum_v P_v (log P_v - log Q_v)     cover all of the teacher's mass
    reverse  KL(Q || P) = sum_v Q_v (log Q_v - log P_v)     seek its modes (MiniLLM)
    jsd      beta KL(P || M) + (1 - beta) KL(Q || M),  M = beta P + (1 - beta) Q   (GKD)
    kd = tau^2 * (mean of the divergence over the positions where mask is True)

tau^2 undoes the 1 / tau^2 that softening puts on the gradients. Work in log space
(log_softmax): logits of 1e4 must not overflow, and 0 log 0 counts as 0.

Write `kd_loss` below; it keeps the name and signature of toyds.distill.losses.kd_loss, so
your version drops into the library unchanged.

    toyds check kd_loss

Notebook: notebooks/04_distillation.ipynb. About 25 minutes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: F401

KINDS = ("forward", "reverse", "jsd")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0, kind: str = "forward", beta: float = 0.5) -> torch.Tensor:
    """tau^2 * the mean divergence between teacher and student over positions where mask is True.

    Logits (B, T, V), mask (B, T). Positions where mask is False are never read, so
    padding may hold anything, even inf or NaN. The teacher is detached: only the
    student learns.
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
    # TODO 1. keep only the unmasked positions: (n, V) each; detach the teacher
    # TODO 2. log P = log_softmax(teacher / tau), log Q = log_softmax(student / tau)
    # TODO 3. the divergence (n,) that `kind` names; 0 log 0 = 0
    # TODO 4. return tau^2 * its mean
    raise NotImplementedError("write kd_loss: see the TODOs above")
