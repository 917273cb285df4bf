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
85-90% acceptance of the second token): toyds/efficient/speculative.py does that,
greedily, so its output is the plain greedy output token for token.

How the toy differs: each module ends with its own RMSNorm before the shared head
(as V3's released weights do); each L^k is a mean over completion tokens (the
loss mask), not over all T; the MTP blocks are dense even in an MoE model, so the
MoE hooks never see them. With a main model of 2-6 blocks, each one-block module
costs a sizeable share of a main forward, so drafting saves less than in V3
(61 layers + 1 MTP module). Shown in examples/08_mla.py.

Shapes: B batch, T time, D model width, V vocabulary, K MTP depths (the paper's D).
"""

from __future__ import annotations

import torch
from torch import nn

from toyds.core.layers import RMSNorm
from toyds.train.losses import masked_lm_loss


class MTPModule(nn.Module):
    """One MTP depth: the projection M_k, one transformer block TRM_k and a final norm.
    Names as in V3's released MTP weights (enorm, hnorm, eh_proj)."""

    def __init__(self, dim: int, block: nn.Module):
        super().__init__()
        self.hnorm, self.enorm = RMSNorm(dim), RMSNorm(dim)
        self.eh_proj = nn.Linear(2 * dim, dim, bias=False)  # M_k
        self.block = block  # TRM_k, a toyds.core.model.Block (attention of the model's kind, dense FFN)
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

    logits (B, T, V) and y, mask (B, T) as toyds.train.batches.collate makes them (y[:, i] is
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
