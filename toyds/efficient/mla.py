"""Multi-head Latent Attention: a KV cache of one small latent per token, not per head.

Each generated token reads every cached key and value; multi-head attention (MHA)
caches 2 n_h d_h numbers per token per layer. MLA (DeepSeek-V2 section 2.1,
DeepSeek-V3 section 2.1.1) compresses keys and values jointly into a latent c_KV
of width d_c and rebuilds per-head keys and values from it; a small rotary key
k^R, shared by all heads, carries position (a rotation between W_UK and c_KV could
not be folded away, V2 section 2.1.3):

    c_KV = RMSNorm(W_DKV h)                 k^R = RoPE(W_KR h)
    q_i = [W_UQ_i c_Q ; RoPE(W_QR_i c_Q)]   k_i = [W_UK_i c_KV ; k^R]   v_i = W_UV_i c_KV
    o_i = sum_s softmax_s(q_i . k_i,s / sqrt(d_nope + d_rope)) v_i,s      u = W_O [o_1; ...; o_nh]

"naive" expands c_KV into k_i, v_i and caches those; "absorb" uses q_i . W_UK_i c =
(W_UK_i^T q_i) . c to fold W_UK into the query and W_UV into the output, and
caches only c_KV and k^R: d_c + d_rope numbers (V2 Table 1: (d_c + d_h^R) l, vs 2 n_h d_h l).

Per cached token and head, "absorb" multiplies over d_c + d_rope numbers for the
score and d_c for the weighted sum, against 2 d_h for MHA: 2.5x MHA's attention
arithmetic at examples/08's widths (d_c = 2 d_h, d_rope = d_h) and 4.25x at V2's
proportions (d_c = 4 d_h, d_rope = d_h / 2). It saves memory, not arithmetic.

Names follow V3's `inference/model.py` (wq / wq_a, q_norm, wq_b, wkv_a, kv_norm,
wkv_b, wo, attn_impl). How the toy differs: rotary positions use toyds's
rotate-half convention (core/rope.py), not V3's interleaved pairs; no YaRN; widths in
the tens. Registered as attn="mla" in toyds/core/attention.py; shown in
examples/08_mla.py. Shapes: B batch, T positions in this call, S positions attended
to (cache + T), nh heads, c = kv_lora_rank, dn / dr / dv = qk_nope / qk_rope / v head dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from toyds.core.layers import RMSNorm
from toyds.core.rope import apply_rope


@dataclass
class MLAConfig:
    kv_lora_rank: int  # d_c: width of the latent c_KV that the absorbed cache holds
    qk_nope_head_dim: int  # d_nope: per-head query/key channels without position
    qk_rope_head_dim: int  # d_rope: per-head query channels (and the shared key) with rotary positions
    v_head_dim: int  # d_v: per-head value width
    q_lora_rank: int = 0  # width of the query latent c_Q; 0 = no query compression (a plain wq)
    attn_impl: str = "absorb"  # "naive" caches per-head keys/values, "absorb" caches c_KV and k^R

    def __post_init__(self):
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"MLAConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.q_lora_rank, int) and self.q_lora_rank >= 0):
            raise ValueError(f"MLAConfig.q_lora_rank must be an integer >= 0 (0 = no compression), "
                             f"got {self.q_lora_rank!r}")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"MLAConfig.qk_rope_head_dim={self.qk_rope_head_dim} must be even "
                             f"(rotary positions rotate channel pairs)")
        if self.attn_impl not in ("naive", "absorb"):
            raise ValueError(f"MLAConfig.attn_impl must be 'naive' or 'absorb', got {self.attn_impl!r}")

    @classmethod
    def v2_ratios(cls, head_dim: int, **overrides) -> MLAConfig:
        """DeepSeek-V2's proportions for heads of width d_h: d_c = 4 d_h, d_rope = d_h / 2,
        d_nope = d_v = d_h (V2 section 2.1.2 uses d_h = 128, d_c = 512, d_h^R = 64)."""
        kw = dict(kv_lora_rank=4 * head_dim, qk_nope_head_dim=head_dim,
                  qk_rope_head_dim=max(2, head_dim // 2 // 2 * 2), v_head_dim=head_dim)
        return cls(**{**kw, **overrides})


class MLANaiveCache:
    """attn_impl="naive": per-head keys [k^C; k^R] and values, as MHA caches them."""

    def __init__(self, batch, n_head, max_len, cfg: MLAConfig, device, dtype):
        qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        self.k = torch.zeros(batch, n_head, max_len, qk, device=device, dtype=dtype)  # (B, nh, L, dn+dr)
        self.v = torch.zeros(batch, n_head, max_len, cfg.v_head_dim, device=device, dtype=dtype)  # (B, nh, L, dv)


class MLALatentCache:
    """attn_impl="absorb": the normalised latent c_KV and the shared rotary key k^R (V3's kv_cache, pe_cache)."""

    def __init__(self, batch, max_len, cfg: MLAConfig, device, dtype):
        self.kv = torch.zeros(batch, max_len, cfg.kv_lora_rank, device=device, dtype=dtype)  # (B, L, c)
        self.pe = torch.zeros(batch, max_len, cfg.qk_rope_head_dim, device=device, dtype=dtype)  # (B, L, dr)


def cache_bytes_per_token(cache, batch: int, max_len: int) -> float:
    """Bytes one token costs in one layer's cache, measured from the cache's tensors."""
    return sum(t.numel() * t.element_size() for t in vars(cache).values()) / (batch * max_len)


def score_mask(mask, T: int, S: int, device) -> torch.Tensor | None:
    """The (T, S) or (B, 1, T, S) bool mask of allowed keys, from toyds's mask argument."""
    if isinstance(mask, str):  # "causal": query t sits at position S - T + t and sees keys up to it
        return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)  # (T, S)
    return mask  # None (everything visible) or (B, 1, T, S)


def masked_softmax(scores: torch.Tensor, mask) -> torch.Tensor:
    """softmax over the keys (last axis) of scores (B, nh, T, S), keys the mask forbids at 0."""
    allowed = score_mask(mask, scores.shape[-2], scores.shape[-1], scores.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1)


class MLA(nn.Module):
    """Multi-head Latent Attention with the forward signature of toyds's MultiHeadAttention."""

    def __init__(self, dim: int, n_head: int, cfg: MLAConfig):
        super().__init__()
        self.cfg, self.n_head = cfg, n_head
        dn, dr, dv, c = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
        if cfg.q_lora_rank == 0:
            self.wq = nn.Linear(dim, n_head * (dn + dr), bias=False)  # [W_UQ; W_QR] on h directly
        else:
            self.wq_a = nn.Linear(dim, cfg.q_lora_rank, bias=False)  # W_DQ: c_Q = W_DQ h
            self.q_norm = RMSNorm(cfg.q_lora_rank)
            self.wq_b = nn.Linear(cfg.q_lora_rank, n_head * (dn + dr), bias=False)  # [W_UQ; W_QR]
        self.wkv_a = nn.Linear(dim, c + dr, bias=False)  # [W_DKV; W_KR]
        self.kv_norm = RMSNorm(c)
        self.wkv_b = nn.Linear(c, n_head * (dn + dv), bias=False)  # [W_UK_i; W_UV_i] for each head i
        self.wo = nn.Linear(n_head * dv, dim, bias=False)  # W_O
        # 1 / sqrt(d_nope + d_rope): the query/key width before absorption, in both paths
        self.softmax_scale = (dn + dr) ** -0.5

    # ------------------------------------ the attention registry's protocol (core/attention.py)
    @classmethod
    def build(cls, cfg) -> MLA:
        return cls(cfg.dim, cfg.n_head, cfg.attn_config)

    @staticmethod
    def default_config(cfg, **overrides) -> MLAConfig:
        return MLAConfig.v2_ratios(cfg.dim // cfg.n_head, **overrides)

    @staticmethod
    def check(cfg) -> None:
        if not isinstance(cfg.attn_config, MLAConfig):
            raise ValueError(f"attn='mla' needs an MLAConfig in GPTConfig.attn_config, got {cfg.attn_config!r}")

    @staticmethod
    def rotary_dim(cfg) -> int:
        return cfg.attn_config.qk_rope_head_dim  # only the decoupled rotary part carries position

    def new_cache(self, batch: int, max_len: int, device, dtype):
        if self.cfg.attn_impl == "naive":
            return MLANaiveCache(batch, self.n_head, max_len, self.cfg, device, dtype)
        return MLALatentCache(batch, max_len, self.cfg, device, dtype)

    def forward(self, x, cos, sin, mask, cache=None, start: int = 0):
        """x (B, T, D) at positions start..start+T-1; cos/sin (T, dr) or (B, 1, T, dr); mask as in MHA."""
        cfg, nh = self.cfg, self.n_head
        dn, dr, c = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
        B, T, _ = x.shape
        q = self.wq(x) if cfg.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))
        q = rearrange(q, "b t (h d) -> b h t d", h=nh)  # (B, nh, T, dn+dr)
        q_nope, q_pe = q.split([dn, dr], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)  # (B, nh, T, dr)
        kv, k_pe = self.wkv_a(x).split([c, dr], dim=-1)  # (B, T, c), (B, T, dr)
        # c_KV = RMSNorm(W_DKV h),  k^R = RoPE(W_KR h), one rotary key shared by every head
        # (rotated as a single head, so per-row tables (B, 1, T, dr) broadcast as for q)
        kv, k_pe = self.kv_norm(kv), apply_rope(k_pe[:, None], cos, sin)[:, 0]  # (B, T, c), (B, T, dr)
        if cfg.attn_impl == "naive":
            return self._naive(q_nope, q_pe, kv, k_pe, mask, cache, start)
        return self._absorb(q_nope, q_pe, kv, k_pe, mask, cache, start)

    def _naive(self, q_nope, q_pe, kv, k_pe, mask, cache, start):
        nh, dn, dv = self.n_head, self.cfg.qk_nope_head_dim, self.cfg.v_head_dim
        T = q_nope.shape[2]
        # k_i = [W_UK_i c_KV ; k^R],  v_i = W_UV_i c_KV
        k_nope, v = rearrange(self.wkv_b(kv), "b t (h d) -> b h t d", h=nh).split([dn, dv], dim=-1)
        k = torch.cat([k_nope, k_pe[:, None].expand(-1, nh, -1, -1)], dim=-1)  # (B, nh, T, dn+dr)
        q = torch.cat([q_nope, q_pe], dim=-1)  # (B, nh, T, dn+dr)
        if cache is not None:  # write this call's keys, then attend to all so far
            cache.k[:, :, start : start + T], cache.v[:, :, start : start + T] = k, v
            k, v = cache.k[:, :, : start + T], cache.v[:, :, : start + T]  # (B, nh, S, ·)
        # scores_ts = q_t . k_s / sqrt(d_nope + d_rope)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) * self.softmax_scale  # (B, nh, T, S)
        p = masked_softmax(scores, mask)
        y = torch.einsum("bhts,bhsd->bhtd", p, v)  # (B, nh, T, dv)
        return self.wo(rearrange(y, "b h t d -> b t (h d)"))  # (B, T, D)

    def _absorb(self, q_nope, q_pe, kv, k_pe, mask, cache, start):
        T = q_nope.shape[2]
        if cache is not None:
            cache.kv[:, start : start + T], cache.pe[:, start : start + T] = kv, k_pe
            kv, k_pe = cache.kv[:, : start + T], cache.pe[:, : start + T]  # (B, S, c), (B, S, dr)
        y = absorbed_attention(q_nope, q_pe, kv, k_pe, self.wkv_b.weight, self.softmax_scale, mask)  # (B, nh, T, dv)
        return self.wo(rearrange(y, "b h t d -> b t (h d)"))  # (B, T, D)


def absorbed_attention(q_nope, q_pe, kv, k_pe, wkv_b: torch.Tensor, softmax_scale: float, mask=None) -> torch.Tensor:
    """Every head's attention output (B, nh, T, dv), computed in latent space ("absorb").

    q_nope (B, nh, T, dn), q_pe (B, nh, T, dr) rotated; kv (B, S, c) the normalised
    latents c_KV and k_pe (B, S, dr) the rotated shared key, cached or not; wkv_b
    (nh * (dn + dv), c) the weight of MLA.wkv_b, rows [W_UK_i; W_UV_i] per head;
    mask as in MultiHeadAttention ("causal", None or bool (B, 1, T, S)). Equal to expanding
    k_i = W_UK_i c and v_i = W_UV_i c and attending as usual ("naive"). A pure
    function, so MLA and the workshop's `mla_absorb` exercise share it.
    """
    nh, dn, c = q_nope.shape[1], q_nope.shape[-1], kv.shape[-1]
    w = wkv_b.view(nh, -1, c)  # (nh, dn+dv, c): rows [W_UK_i; W_UV_i] per head
    w_uk, w_uv = w[:, :dn], w[:, dn:]  # (nh, dn, c), (nh, dv, c)
    # q_i . (W_UK_i c) = (W_UK_i^T q_i) . c: the query moves into latent space instead
    q_lat = torch.einsum("bhtd,hdc->bhtc", q_nope, w_uk)  # (B, nh, T, c)
    # scores_ts = ((W_UK^T q^C_t) . c_s + q^R_t . k^R_s) / sqrt(d_nope + d_rope)
    scores = (torch.einsum("bhtc,bsc->bhts", q_lat, kv)
              + torch.einsum("bhtr,bsr->bhts", q_pe, k_pe)) * softmax_scale  # (B, nh, T, S)
    p = masked_softmax(scores, mask)
    # o_i = sum_s p_s W_UV_i c_s = W_UV_i (sum_s p_s c_s): attend in latent space, then expand once
    o_lat = torch.einsum("bhts,bsc->bhtc", p, kv)  # (B, nh, T, c)
    return torch.einsum("bhtc,hdc->bhtd", o_lat, w_uv)  # (B, nh, T, dv)
