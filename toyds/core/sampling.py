"""Batched sampling with a KV cache, returning what GRPO needs.

Generating a token means running the model on the sequence so far. Without a
cache every step recomputes attention for every earlier position; with one, each
block stores its keys and values, so step t only runs the new token:

    prefill:  logits = model(prompt)                  fills cache[:, :, :P]
    step t:   logits = model(token_t, start=P+t)      attends to cache[:, :, :P+t+1]

Prompts of different lengths are left-padded and their pads masked out of
attention; rotary positions are relative, so padding changes nothing.

Each step samples from softmax(logits / temperature) (<pad> and <bos> excluded: they
never occur inside a completion), optionally restricted to the
top_k tokens, or takes the argmax when temperature == 0 (greedy). A row stops at
<eos>; the batch stops when every row has stopped or max_new_tokens is reached.

Returned log-probabilities are log softmax(logits / temperature) at the sampled
token (the full distribution, before top-k truncation), for inspection. GRPO
recomputes its log-probabilities with `completion_logprobs` instead (at temperature
1, with gradients), so its ratio is exactly 1 before the first update. Used by
toyds/evaluate/accuracy.py, toyds/rl/grpo.py and toyds/distill/kd.py.

Shapes: B batch, P padded prompt length, N new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toyds.core.layers import evaluating
from toyds.core.tokenizer import Tokenizer


@dataclass
class Generation:
    sequences: torch.Tensor  # (B, P + N) left-padded prompts, then completions (pad after eos)
    pad_mask: torch.Tensor  # (B, P + N) True for prompt tokens and generated tokens up to <eos>
    prompt_len: int  # P: completions start at this column
    completion_mask: torch.Tensor  # (B, N) True for generated tokens, <eos> included
    logprobs: torch.Tensor  # (B, N) log-probability of each generated token (0 where masked)
    texts: list[str]  # decoded completions, <eos> included where one was produced

    @property
    def completions(self) -> torch.Tensor:  # (B, N)
        return self.sequences[:, self.prompt_len :]

    @property
    def lengths(self) -> torch.Tensor:  # (B,) tokens generated, <eos> included
        return self.completion_mask.sum(1)


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts right-aligned: ids (B, P) and mask (B, P), True for real tokens."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(prompts), P, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p) :] = True
    return ids, mask


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, generator=None):
    """Pick one token per row from logits (B, V); returns (tokens (B,), logprobs (B,))."""
    if temperature == 0:
        tok = logits.argmax(-1)
        logp = torch.log_softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
        return tok, logp
    scaled = logits / temperature
    logp_all = torch.log_softmax(scaled, -1)
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]  # (B, 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, -1)
    tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return tok, logp_all.gather(-1, tok[:, None])[:, 0]


def ban_specials(logits: torch.Tensor, tok: Tokenizer) -> torch.Tensor:
    """<pad> and <bos> never occur inside a completion, so the policy never samples them."""
    return logits.index_fill(-1, torch.tensor([tok.pad_id, tok.bos_id], device=logits.device), float("-inf"))


def completion_logprobs(model, sequences, pad_mask, prompt_len: int, tokenizer: Tokenizer | None = None,
                        with_entropy: bool = False):
    """log pi(token) for every completion position, recomputed with gradients. (B, N)

    The same distribution `generate` samples from (temperature 1, specials banned),
    so GRPO's ratio exp(logp - old_logp) is exactly 1 before the first update.
    with_entropy=True also returns each position's entropy H_t = -sum_v pi(v) log pi(v)
    (B, N), as TRL computes it for top_entropy_quantile and entropy_coef.
    """
    tok = tokenizer or Tokenizer()
    logits = model(sequences, pad_mask=pad_mask)[:, prompt_len - 1 : -1]  # (B, N, V)
    dist = torch.log_softmax(ban_specials(logits, tok).float(), -1)
    logp = dist.gather(-1, sequences[:, prompt_len:, None])[..., 0]  # (B, N)
    # positions after <eos> hold <pad>, whose log-probability is -inf: report 0 there, as generate does
    logp = logp.masked_fill(~pad_mask[:, prompt_len:], 0.0)
    if not with_entropy:
        return logp
    # H_t = -sum_v p_v log p_v (a banned token has p = 0 and adds nothing)
    entropy = -(dist.exp() * dist.nan_to_num(neginf=0.0)).sum(-1)
    return logp, entropy.masked_fill(~pad_mask[:, prompt_len:], 0.0)


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    tokenizer: Tokenizer | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Generation:
    """Sample completions for a batch of token-id prompts."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tok = tokenizer or Tokenizer()
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, tok.pad_id, device)
    B, P = ids.shape
    if P + max_new_tokens > model.cfg.block_size:
        raise ValueError(
            f"prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"block_size={model.cfg.block_size}"
        )
    with evaluating(model), torch.inference_mode():  # no autograd bookkeeping at all while decoding
        out = _decode(model, ids, mask, max_new_tokens, temperature, top_k, tok, generator, use_cache)
    new, logps, comp_mask = (t.clone() for t in out)  # plain tensors again: GRPO trains on these tokens
    texts = [tok.decode(row[m].tolist()) for row, m in zip(new, comp_mask)]
    return Generation(
        sequences=torch.cat([ids, new], 1),
        pad_mask=torch.cat([mask, comp_mask], 1),
        prompt_len=P,
        completion_mask=comp_mask,
        logprobs=logps,
        texts=texts,
    )


def _decode(model, ids, mask, max_new_tokens, temperature, top_k, tok, generator, use_cache):
    """The decoding loop of `generate`: (new tokens, their log-probabilities, completion mask), each (B, N)."""
    B, P = ids.shape
    device = ids.device
    caches = model.new_caches(B, P + max_new_tokens) if use_cache else None
    padded = not bool(mask.all())

    new = torch.full((B, max_new_tokens), tok.pad_id, dtype=torch.long, device=device)
    logps = torch.zeros(B, max_new_tokens, device=device)
    alive = torch.ones(B, dtype=torch.bool, device=device)
    comp_mask = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
    seq, full_mask = ids, mask
    # 1. prefill: run the whole prompt once (or the whole sequence, without a cache)
    logits = model(ids, pad_mask=mask if padded else None, caches=caches)[:, -1]
    for t in range(max_new_tokens):
        logits = ban_specials(logits, tok)
        # 2. sample one token per row; rows that already stopped get <pad>
        nxt, lp = sample_next(logits, temperature, top_k, generator)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, tok.pad_id))
        new[:, t], logps[:, t], comp_mask[:, t] = nxt, torch.where(alive, lp, 0.0), alive
        alive = alive & (nxt != tok.eos_id)
        seq = torch.cat([seq, nxt[:, None]], 1)
        full_mask = torch.cat([full_mask, comp_mask[:, t : t + 1]], 1)
        if not alive.any() or t == max_new_tokens - 1:
            break
        # 3. run only the new token through the model, attending to the cache
        if use_cache:
            logits = model(nxt[:, None], pad_mask=full_mask if padded else None, caches=caches, start=P + t)
        else:
            logits = model(seq, pad_mask=full_mask if padded else None)
        logits = logits[:, -1]
    N = t + 1
    return new[:, :N], logps[:, :N], comp_mask[:, :N]
