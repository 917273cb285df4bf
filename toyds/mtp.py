"""Multi-token prediction, and self-speculative greedy decoding with it.

A next-token model sees one target per position. DeepSeek-V3 (section 2.2) adds K
sequential MTP modules (the paper's D): module k takes the previous depth's
representation of position i and the embedding of token i+k, and predicts token
i+k+1, so every position also learns to look further ahead. Each module is one transformer block
plus a projection; the embedding and the output head are the main model's:

    h'^k_i = M_k [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))]        (M_k: 2D -> D)
    h^k_{1:T-k} = TRM_k(h'^k_{1:T-k})         P^k_{i+k+1} = softmax(OutHead(h^k_i))
    L_MTP = (lambda / K) sum_k L^k_MTP,        L = L_main + L_MTP

h^0 is the main model's final (normalised) hidden state. At inference the modules
can be dropped, or used to draft tokens that the main model checks (V3 reports
85-90% acceptance of the second token): here, greedy self-speculative decoding,
whose output is the plain greedy output token for token.

How the toy differs: each module ends with its own RMSNorm before the shared head
(as V3's released weights do); each L^k is a mean over completion tokens (the
loss mask), not over all T; the MTP blocks are dense even in an MoE model, so the
MoE hooks never see them. With a main model of 2-6 blocks, each one-block module
costs a sizeable share of a main forward, so drafting saves less than in V3
(61 layers + 1 MTP module). Shown in examples/08_mla.py.

Shapes: B batch, T time, D model width, V vocabulary, K MTP depths (the paper's D).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from toyds.layers import RMSNorm, evaluating
from toyds.sampling import Generation, ban_specials, left_pad, sample_next
from toyds.tokenizer import Tokenizer
from toyds.train import masked_lm_loss


class MTPModule(nn.Module):
    """One MTP depth: the projection M_k, one transformer block TRM_k and a final norm.
    Names as in V3's released MTP weights (enorm, hnorm, eh_proj)."""

    def __init__(self, dim: int, block: nn.Module):
        super().__init__()
        self.hnorm, self.enorm = RMSNorm(dim), RMSNorm(dim)
        self.eh_proj = nn.Linear(2 * dim, dim, bias=False)  # M_k
        self.block = block  # TRM_k, a toyds.model.Block (attention of the model's kind, dense FFN)
        self.norm = RMSNorm(dim)

    def forward(self, h_prev, emb, cos, sin, mask, cache=None, start: int = 0) -> torch.Tensor:
        """h_prev (B, T, D) = h^{k-1}, emb (B, T, D) = Emb(t_{i+k}); returns h^k (B, T, D)."""
        # h'^k_i = M_k [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))]
        x = self.eh_proj(torch.cat([self.hnorm(h_prev), self.enorm(emb)], dim=-1))  # (B, T, D)
        # h^k = TRM_k(h'^k)
        return self.norm(self.block(x, cos, sin, mask, cache, start))


def mtp_logits(model, idx: torch.Tensor, h0: torch.Tensor) -> list[torch.Tensor]:
    """Logits of every MTP depth for tokens idx (B, T) whose main hidden states are h0 (B, T, D).

    Depth k's logits (B, T-k, V): position i predicts token i+k+1 of idx's sequence.
    """
    T = idx.shape[1]
    if len(model.mtp) >= T:
        raise ValueError(f"MTP depth {len(model.mtp)} needs sequences longer than it; got T={T}")
    h, out = h0, []
    for k, module in enumerate(model.mtp, start=1):
        n = T - k  # depth k has a next-next-token target for positions 0..T-k-1 only
        h = module(h[:, :n], model.embed(idx[:, k:]), model.rope_cos[:n], model.rope_sin[:n], "causal")
        out.append(model.head(h))  # (B, T-k, V)
    return out


def mtp_loss(logits, mtp_logits_, y, mask, mtp_lambda: float = 0.3) -> dict[str, torch.Tensor]:
    """L = L_main + (lambda / K) sum_k L^k_MTP, with the loss mask of the main loss.

    logits (B, T, V) and y, mask (B, T) as toyds.train.collate makes them (y[:, i] is
    token i+1); mtp_logits_[k-1] (B, T-k, V) predicts y[:, k:]. Returns the total
    ("loss"), its parts ("main", "mtp") and each depth's unweighted loss ("mtp_k").
    """
    main = masked_lm_loss(logits, y, mask)
    per_depth = [masked_lm_loss(lk, y[:, k:], mask[:, k:]) for k, lk in enumerate(mtp_logits_, start=1)]
    # L_MTP = (lambda / K) sum_k L^k_MTP
    mtp = mtp_lambda / len(per_depth) * torch.stack(per_depth).sum() if per_depth else torch.zeros_like(main)
    return {"loss": main + mtp, "main": main, "mtp": mtp, **{f"mtp_{k}": v for k, v in enumerate(per_depth, 1)}}


def loss_with_mtp(model, x, y, mask, mtp_lambda: float = 0.3) -> dict[str, torch.Tensor]:
    """The training loss of one batch: one forward through model (or its DDP wrapper)."""
    logits, mtp = model(x, with_mtp=True)
    return mtp_loss(logits, mtp, y, mask, mtp_lambda)


# ------------------------------------------------------- speculative decoding


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
