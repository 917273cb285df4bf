"""The next-token loss every toyds trainer starts from, with the prompt masked out.

Pretraining and fine-tuning are next-token prediction on (prompt, completion)
pairs; only completion tokens count, so a model is trained to *answer* `347+589=`,
never to predict the question (minGPT's adder does the same):

    loss = - sum_t m_t log p(x_{t+1} | x_<=t) / sum_t m_t,   m_t = 1 on completion tokens

A pure function of tensors: supervised training (train/supervised.py), multi-token
prediction (efficient/mtp.py) and logit distillation (distill/kd.py) all call it.

Shapes: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # loss = - sum_t m_t log p(x_{t+1} | x_<=t) / sum_t m_t
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
    m = mask.flatten().float()
    return (nll * m).sum() / m.sum().clamp(min=1)
