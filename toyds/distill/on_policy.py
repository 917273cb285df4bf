"""On-policy distillation: the student writes, the teacher grades every token it wrote.

Off-policy distillation (distill/kd.py) trains the student on text someone else
wrote, so at test time it meets prefixes of its own that it was never taught to
recover from. GKD (Agarwal et al., ICLR 2024, "On-Policy Distillation of Language
Models: Learning from Self-Generated Mistakes") trains it on its own samples
instead: the student writes completions for a batch of prompts (no answers are
needed), the teacher reads the same tokens, and the loss is the divergence at every
completion token (distill/losses.py). A share lambda of the steps is on-policy, the
rest off-policy (GKD's lmbda; here spread evenly over the steps, not a coin per step).

Shapes: B prompts, P padded prompt, N new tokens, V vocabulary.
"""

from __future__ import annotations

import math

import torch

from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.distill.losses import kd_loss


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
    kd = kd_loss(s_logits, t_logits, g.completion_mask, cfg.temperature, cfg.kind, cfg.beta)
    return kd, {"kd": kd.item(), "length": g.lengths.float().mean().item()}
