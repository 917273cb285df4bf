"""Causal self-attention with rotary positions, and the registry of attentions a model can use.

Multi-head attention (Vaswani et al. 2017) gives each of n_h heads its own query, key
and value projections of width d_h = D / n_h; each position attends to every earlier
one, and the heads' outputs are concatenated and projected back:

    q_i, k_i, v_i = W_Q_i x, W_K_i x, W_V_i x        (rotary positions on q_i, k_i: rope.py)
    o_i = softmax(q_i k_i^T / sqrt(d_h) + causal mask) v_i        u = W_O [o_1; ...; o_nh]

A KV cache keeps every earlier position's keys and values, so generating a token
costs one position of attention (sampling.py). MHA caches 2 n_h d_h numbers per token
per layer; DeepSeek's Multi-head Latent Attention (toyds/efficient/mla.py) caches far
fewer. Both have the same forward signature and are chosen by name:

    ATTENTIONS = {"mha": MultiHeadAttention, "mla": MLA}      GPTConfig(attn="mla", attn_config=MLAConfig(...))

A new attention is one module plus one line here. It is a class with `build(cfg)`
(the layer for a GPTConfig), `new_cache(batch, max_len, device, dtype)`, the forward
below, `rotary_dim(cfg)` (how many channels rope.py rotates), `check(cfg)` (raise a
ValueError naming what cannot work) and `default_config(cfg, **overrides)` (its
options: None for MHA, an MLAConfig for MLA). How the toy differs from V3: V3 uses
MLA everywhere; here MHA is the default and the fused q/k/v projection is one matrix.

Shapes: B batch, T positions in this call, S positions attended to (cache + T),
D model width, nh heads, hs head size (D / nh).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from toyds.core.rope import apply_rope
from toyds.efficient.mla import MLA


class KVCache:
    """Keys and values of every position generated so far, one per block."""

    def __init__(self, batch: int, n_head: int, max_len: int, hs: int, device, dtype):
        self.k = torch.zeros(batch, n_head, max_len, hs, device=device, dtype=dtype)  # (B, nh, L, hs)
        self.v = torch.zeros_like(self.k)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a fused q/k/v projection (names as nanoGPT's, wqkv and wo)."""

    def __init__(self, dim: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)  # [W_Q; W_K; W_V], every head's rows side by side
        self.wo = nn.Linear(dim, dim, bias=False)  # W_O

    # ---------------------------------------------------- the registry's protocol
    @classmethod
    def build(cls, cfg) -> MultiHeadAttention:
        return cls(cfg.dim, cfg.n_head)

    @staticmethod
    def default_config(cfg, **overrides):
        if overrides:
            raise ValueError(f"attn='mha' takes no options, got {sorted(overrides)}")
        return None

    @staticmethod
    def check(cfg) -> None:
        if cfg.attn_config is not None:
            raise ValueError(f"attn='mha' takes no attn_config, got {cfg.attn_config!r}")
        if cfg.dim % cfg.n_head or (cfg.dim // cfg.n_head) % 2:
            raise ValueError(f"dim={cfg.dim} must split into n_head={cfg.n_head} heads of even size "
                             f"(rotary positions rotate channel pairs)")

    @staticmethod
    def rotary_dim(cfg) -> int:
        return cfg.dim // cfg.n_head  # every channel of a head is rotated

    def new_cache(self, batch: int, max_len: int, device, dtype) -> KVCache:
        return KVCache(batch, self.n_head, max_len, self.wo.in_features // self.n_head, device, dtype)

    # ----------------------------------------------------------------- forward
    def forward(self, x, cos, sin, mask, cache: KVCache | None, start: int):
        """x (B, T, D) at positions start..start+T-1; mask "causal", None or a bool (B, 1, T, S)."""
        q, k, v = rearrange(self.wqkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_head)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, nh, T, hs)
        if cache is not None:  # write this call's keys, then attend to all so far
            T = x.shape[1]
            cache.k[:, :, start : start + T] = k
            cache.v[:, :, start : start + T] = v
            k, v = cache.k[:, :, : start + T], cache.v[:, :, : start + T]  # (B, nh, S, hs)
        if isinstance(mask, str):  # "causal": the fast path when nothing is padded
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # None (one new token, attends to everything) or a (B, 1, T, S) bool mask
            if mask is not None:  # as 0 / -inf added to the scores: the same softmax, and on a CPU
                #                   SDPA takes an additive mask about twice as fast as a bool one
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
            if q.shape[2] == 1 and not q.is_cuda:  # decoding one token: the attention written out is faster on a
                # CPU than the fused kernel, which is tuned for long queries
                s = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (B, nh, 1, S)
                y = (s if mask is None else s + mask).softmax(-1) @ v  # (B, nh, 1, hs)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(rearrange(y, "b h t d -> b t (h d)"))  # (B, T, D)


# name -> attention class; GPTConfig(attn=name) picks one
ATTENTIONS: dict[str, type[nn.Module]] = {"mha": MultiHeadAttention, "mla": MLA}
