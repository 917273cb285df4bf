"""On-policy distillation: the student writes, the teacher grades every token it wrote.

Off-policy distillation (distill/kd.py) trains the student on text someone else
wrote, so at test time it meets prefixes of its own that it was never taught to
recover from. GKD (Agarwal et al., ICLR 2024, "On-Policy Distillation of Language
Models: Learning from Self-Generated Mistakes") trains it on its own samples
instead: the student writes completions for a batch of prompts (no answers are
needed), the teacher reads the same tokens, and the loss is the divergence at every
completion token (distill/losses.py). A share lambda of the steps is on-policy, the
rest off-policy (GKD's lmbda; here spread evenly over the steps, not a coin per step).

The sampled-token form needs only the teacher's log-probability of each token the
student wrote, not its whole distribution (an API teacher gives no more): the per-token
log-ratio is a dense reward, trained with the policy gradient,

    r_t = log p_teacher(x_t) - log p_student(x_t)      (detached: a reward, not a target)
    loss = - mean over completion tokens of r_t * log p_student(x_t)

whose expected gradient is the reverse KL's (KDConfig.on_policy_loss = "sampled_token";
the default "divergence" uses the full distributions, distill/losses.py).

Shapes: B prompts, P padded prompt, N new tokens, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.distill.losses import kd_loss

ON_POLICY_LOSSES = ("divergence", "sampled_token")


def is_on_policy_step(step: int, share: float) -> bool:
    """Spread on-policy steps evenly: exactly floor(n * share) of the first n steps are on-policy."""
    return math.floor((step + 1) * share) > math.floor(step * share)


def on_policy_losses(student, teacher, prompts: list[list[int]], cfg, tok: Tokenizer,
                     generator: torch.Generator | None = None, net=None) -> tuple[torch.Tensor, dict]:
    """KD on completions the student samples for `prompts` (token ids); no ground truth used.
    net: the module to backpropagate through (a DDP wrapper of the student), default the student."""
    # 1. the student writes completions (left-padded prompts, then N new tokens)
    longest = max(len(p) for p in prompts)
    room = min(student.cfg.block_size, teacher.cfg.block_size) - longest
    if room < 1:
        raise ValueError(f"a prompt of {longest} tokens leaves no room to generate within block sizes "
                         f"teacher {teacher.cfg.block_size}, student {student.cfg.block_size}")
    g = generate(student, prompts, min(cfg.max_new_tokens, room), cfg.sample_temperature,
                 tokenizer=tok, generator=generator)
    seq, pad, P = g.sequences, g.pad_mask, g.prompt_len
    # 2. both models read the same sequence; logits at P-1 .. end-1 predict the N completion tokens
    s_logits = (net or student)(seq, pad_mask=pad)[:, P - 1 : -1]  # (B, N, V)
    with torch.no_grad():
        t_logits = teacher(seq, pad_mask=pad)[:, P - 1 : -1]  # (B, N, V)
    # 3. the teacher scores every token the student wrote, <eos> included
    if cfg.on_policy_loss == "sampled_token":
        kd = sampled_token_loss(s_logits, t_logits, seq[:, P:], g.completion_mask)
    else:
        kd = kd_loss(s_logits, t_logits, g.completion_mask, cfg.temperature, cfg.kind, cfg.beta)
    return kd, {"kd": kd.item(), "length": g.lengths.float().mean().item()}


def sampled_token_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tokens: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """-mean over mask of sg(log p_t(x) - log p_s(x)) * log p_s(x), x the sampled tokens.

    Logits (B, N, V), tokens (B, N) long, mask (B, N) bool. Only the student learns; masked
    positions are never read, so padding may hold anything."""
    keep = mask.bool()
    x = tokens.masked_fill(~keep, 0).unsqueeze(-1)  # (B, N, 1) any id is fine where masked
    logp_s = F.log_softmax(student_logits.float(), -1).gather(-1, x).squeeze(-1)[keep]  # (n,)
    logp_t = F.log_softmax(teacher_logits.detach().float(), -1).gather(-1, x).squeeze(-1)[keep]
    reward = (logp_t - logp_s).detach()  # the dense, per-token reward
    return -(reward * logp_s).sum() / max(int(keep.sum()), 1)
