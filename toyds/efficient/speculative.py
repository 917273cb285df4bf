"""Self-speculative greedy decoding: the MTP modules draft, the main model checks.

A model trained with multi-token prediction (toyds/efficient/mtp.py, DeepSeek-V3
section 2.2) has modules that guess the tokens after the next one. Each round,
depth k drafts token n+k from the previous depth's hidden state, and one forward of
the main model over token n and the drafts checks them all at once:

    drafts   t'_{n+1} .. t'_{n+K}  from MTP modules 1..K
    verify   g_{n+1} .. g_{n+K+1} = argmax of the main model at positions n .. n+K
    keep     the longest prefix with t'_{n+i} = g_{n+i}, then the main model's next token

So a round costs one main forward and yields 1 + (accepted drafts) tokens, and the
output is exactly plain greedy decoding's. V3 reports the second token accepted
85-90% of the time. How the toy differs: a main model of 2-6 blocks, so a one-block
MTP module costs a sizeable share of a main forward and drafting saves less than in
V3 (61 layers + 1 module); rows of a batch advance together, by the fewest drafts
any row accepted. Shown in examples/08_mla.py.

Shapes: B batch, P padded prompt, N new tokens, L = P + N, D width, K MTP depths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from toyds.core.layers import evaluating
from toyds.core.sampling import Generation, ban_specials, left_pad, sample_next
from toyds.core.tokenizer import Tokenizer


@dataclass
class SpecStats:
    rounds: int = 0  # verification forwards of the main model, after the prefill
    proposed: list[int] = field(default_factory=list)  # [k-1]: live rows x rounds where depth k drafted
    accepted: list[int] = field(default_factory=list)  # [k-1]: of those, drafts 1..k all matched greedy

    @property
    def acceptance(self) -> list[float]:
        """Acceptance rate by depth: depth k's draft kept (with every earlier one)."""
        return [a / p if p else float("nan") for a, p in zip(self.accepted, self.proposed)]


@dataclass
class SpecState:
    seq: torch.Tensor  # (B, L) prompt, committed tokens, then this round's drafts
    real: torch.Tensor  # (B, L) pad mask: False on left padding and after <eos>
    hid: torch.Tensor  # (K, B, L, D) hid[k][:, j] = h^k_j (h^0 from the main model)
    caches: list  # one attention cache per MTP depth
    valid: list[int]  # depth k's cache and h^k are exact (committed tokens only) for positions < valid[k-1]
    padded: bool  # any left padding: then attention needs real as its pad mask


def draft(model, st: SpecState, n: int, n_draft: int, tok: Tokenizer) -> None:
    """Draft tokens for positions n+1 .. n+n_draft into st.seq, chaining depths at position n-1.

    Depth k brings its positions valid[k-1] .. n-1 up to date (input: h^{k-1}_j and the
    token at j+k, a draft when j+k > n), then its last position drafts token n+k.
    """
    B = st.seq.shape[0]
    for k in range(1, n_draft + 1):
        s = st.valid[k - 1]
        mask = model._attention_mask(st.real[:, :n] if st.padded else None, B, n - s, s, st.seq.device)
        h = model.mtp[k - 1](st.hid[k - 1, :, s:n], model.embed(st.seq[:, s + k : n + k]),
                             model.rope_cos[s:n], model.rope_sin[s:n], mask, st.caches[k - 1], s)  # (B, n-s, D)
        if k < len(model.mtp):
            st.hid[k, :, s:n] = h
        st.seq[:, n + k], _ = sample_next(ban_specials(model.head(h[:, -1]), tok), 0, None)
        st.valid[k - 1] = n - k + 1  # position j used only committed tokens iff j + k <= n


@torch.no_grad()
def speculative_generate(model, prompts: list[list[int]], max_new_tokens: int,
                         tokenizer: Tokenizer | None = None) -> tuple[Generation, SpecStats]:
    """Greedy decoding drafted by the MTP modules and verified by the main model.

    Returns what generate(model, prompts, max_new_tokens, temperature=0) returns, and
    the acceptance counts. Each round costs one main forward and yields 1 + a tokens.
    """
    tok, cfg = tokenizer or Tokenizer(), model.cfg
    K, N = cfg.mtp_depth, max_new_tokens
    if K < 1:
        raise ValueError(f"speculative decoding drafts with the MTP modules; this model has mtp_depth={K}")
    if N < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {N}")
    p = model.embed.weight
    ids, mask = left_pad(prompts, tok.pad_id, p.device)
    B, P = ids.shape
    if P + N > cfg.block_size:
        raise ValueError(f"prompt ({P} tokens) + max_new_tokens ({N}) exceeds the model's block_size={cfg.block_size}")
    with evaluating(model):  # restored even if decoding fails
        return _speculate(model, ids, mask, N, K, tok)


@torch.no_grad()
def _speculate(model, ids, mask, N: int, K: int, tok) -> tuple[Generation, SpecStats]:
    """The rounds of speculative_generate: draft, verify, keep the agreed prefix, repeat."""
    cfg, p = model.cfg, model.embed.weight
    B, P = ids.shape
    L = P + N
    st = SpecState(seq=torch.full((B, L), tok.pad_id, dtype=torch.long, device=p.device),
                   real=torch.ones(B, L, dtype=torch.bool, device=p.device),
                   hid=torch.zeros(K, B, L, cfg.dim, device=p.device, dtype=p.dtype),
                   caches=[m.block.attn.new_cache(B, L, p.device, p.dtype) for m in model.mtp],
                   valid=[0] * K, padded=not bool(mask.all()))
    st.seq[:, :P], st.real[:, :P] = ids, mask
    caches = model.new_caches(B, L)
    logps, comp = torch.zeros(B, N, device=p.device), torch.zeros(B, N, dtype=torch.bool, device=p.device)
    alive = torch.ones(B, dtype=torch.bool, device=p.device)
    stats = SpecStats(proposed=[0] * K, accepted=[0] * K)
    produced = 0

    def commit(tokens, lp):  # append one column of tokens, as generate does: <pad> after <eos>
        nonlocal alive, produced
        t = torch.where(alive, tokens, tok.pad_id)
        st.seq[:, P + produced], st.real[:, P + produced] = t, alive
        logps[:, produced], comp[:, produced] = torch.where(alive, lp, 0.0), alive
        alive, produced = alive & (t != tok.eos_id), produced + 1

    def greedy(h):  # the main model's greedy tokens and their log-probabilities, (B, T)
        t, lp = sample_next(ban_specials(model.head(h), tok).flatten(0, 1), 0, None)
        return t.view(B, -1), lp.view(B, -1)

    # 1. prefill: the prompt through the main model gives h^0 and the first token
    h = model.features(ids, mask if st.padded else None, caches)  # (B, P, D)
    st.hid[0, :, :P] = h
    commit(*[v[:, 0] for v in greedy(h[:, -1:])])
    n = P  # position of the newest token, not yet run through the main model
    while produced < N and alive.any():
        n_draft = min(K, N - produced - 1)  # never draft past the last token asked for
        # 2. draft tokens n+1 .. n+n_draft with the MTP modules
        draft(model, st, n, n_draft, tok)
        st.real[:, n + 1 : n + 1 + n_draft] = alive[:, None]
        # 3. verify: one forward of the main model over token n and the drafts
        S = n + 1 + n_draft
        h = model.features(st.seq[:, n:S], st.real[:, :S] if st.padded else None, caches, start=n)  # (B, 1+n_draft, D)
        g, lp = greedy(h)  # g[:, i]: the main model's token for position n+1+i
        # 4. keep the drafts every live row agrees with, then the main model's own next token
        agree = (g[:, :n_draft] == st.seq[:, n + 1 : S]) | ~alive[:, None]  # (B, n_draft)
        a_row = agree.long().cumprod(1).sum(1)  # (B,) drafts accepted per row
        a = int(a_row.min())
        stats.rounds += 1
        for k in range(1, n_draft + 1):
            stats.proposed[k - 1] += int(alive.sum())
            stats.accepted[k - 1] += int((alive & (a_row >= k)).sum())
        st.hid[0, :, n : n + a + 1] = h[:, : a + 1]  # positions n .. n+a now hold committed tokens
        for i in range(a + 1):
            if alive.any():
                commit(g[:, i], lp[:, i])
        # 5. roll back: cache entries past position n+a hold rejected drafts; the next
        # round writes over them, since every forward attends only to positions < start + T
        n += a + 1

    new, logps, comp = st.seq[:, P : P + produced], logps[:, :produced], comp[:, :produced]
    texts = [tok.decode(row[m].tolist()) for row, m in zip(new, comp)]
    gen = Generation(sequences=st.seq[:, : P + produced].clone(), pad_mask=torch.cat([mask, comp], 1),
                     prompt_len=P, completion_mask=comp, logprobs=logps, texts=texts)
    return gen, stats
