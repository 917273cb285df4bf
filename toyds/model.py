"""A tiny decoder-only transformer, nanoGPT-shaped, with DeepSeek-style parts.

The model every toyds experiment trains: token embedding -> n_layer blocks of
(RMSNorm -> causal self-attention with rotary positions) and (RMSNorm ->
feed-forward), each wrapped in a residual connection -> RMSNorm -> logits through
the tied embedding matrix. The feed-forward slot takes a dense SwiGLU
(`ffn="dense"`) or a mixture of experts (`ffn="moe"`, toyds/moe.py), which is how
DeepSeek-V3 (section 2.1) swaps most of its dense FFNs for DeepSeekMoE layers.

Rotary positions (Su et al. 2021) rotate each query/key pair of channels by an
angle proportional to the position, so the score q_m . k_n depends only on m - n:

    theta_i = base^(-2i / hs),  (q_m)_rot = q_m * cos(m theta) + rotate_half(q_m) * sin(m theta)

The attention slot takes plain multi-head attention (`attn="mha"`) or DeepSeek's
Multi-head Latent Attention (`attn="mla"`, toyds/mla.py), each with its own kind
of KV cache; `mtp_depth=K` adds V3's multi-token prediction modules (toyds/mtp.py).
How the toy differs from DeepSeek-V3: a 53-character vocabulary; widths in
the tens, not thousands. Generation keeps a KV cache, so each new token costs one
position of attention instead of the whole sequence (examples/benchmarks/bench_core.py).

Shapes: B batch, T time (positions in this call), S positions attended to
(cache + T), D model width, nh heads, hs head size (D / nh), V vocabulary.
Shown in examples/00_arithmetic.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from toyds.layers import RMSNorm, SwiGLU
from toyds.mla import MLA, MLAConfig
from toyds.moe import MoE, MoEConfig
from toyds.mtp import MTPModule, mtp_logits
from toyds.rope import apply_rope, rope_tables, segment_layout


@dataclass
class GPTConfig:
    vocab_size: int = 53  # tokens in toyds.tokenizer.VOCAB
    block_size: int = 128  # the longest sequence (prompt + completion) the model sees
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    dim: int = 128  # model width D
    hidden_dim: int = 384  # SwiGLU hidden width of the dense feed-forward
    ffn: str = "dense"  # "dense" SwiGLU or "moe" (mixture of experts, toyds/moe.py)
    moe: MoEConfig | None = None  # the MoE layer's config when ffn == "moe"
    rope_base: float = 10000.0  # rotary base; angles theta_i = base^(-2i/hs)
    pad_id: int = 0  # id of <pad>: its positions are never routed to experts nor counted in their load
    attn: str = "mha"  # "mha" multi-head attention or "mla" Multi-head Latent Attention (toyds/mla.py)
    mla: MLAConfig | None = None  # the MLA layer's config when attn == "mla"
    mtp_depth: int = 0  # K multi-token prediction modules (toyds/mtp.py; the paper's D); 0 = none

    def __post_init__(self):
        if isinstance(self.moe, dict):  # rebuilt from a checkpoint
            self.moe = MoEConfig(**self.moe)
        if isinstance(self.mla, dict):
            self.mla = MLAConfig(**self.mla)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "dim", "hidden_dim"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.mtp_depth, int) and self.mtp_depth >= 0):
            raise ValueError(f"GPTConfig.mtp_depth must be an integer >= 0 (0 = no MTP), got {self.mtp_depth!r}")
        if self.attn not in ("mha", "mla"):
            raise ValueError(f"attn must be 'mha' or 'mla', got {self.attn!r}")
        if (self.attn == "mla") != (self.mla is not None):
            raise ValueError(f"attn={self.attn!r} with mla={self.mla!r}: attn='mla' needs an MLAConfig in "
                             f"GPTConfig.mla, and attn='mha' takes none")
        if self.attn == "mha" and (self.dim % self.n_head or (self.dim // self.n_head) % 2):
            raise ValueError(
                f"dim={self.dim} must split into n_head={self.n_head} heads of even size "
                f"(rotary positions rotate channel pairs)"
            )
        if self.ffn not in ("dense", "moe"):
            raise ValueError(f"ffn must be 'dense' or 'moe', got {self.ffn!r}")
        if self.ffn == "moe":
            if self.moe is None:
                raise ValueError("ffn='moe' needs a MoEConfig in GPTConfig.moe")
            if self.moe.dim != self.dim:
                raise ValueError(f"MoEConfig.dim={self.moe.dim} must equal GPTConfig.dim={self.dim}")

    def to_dict(self) -> dict:
        return asdict(self)


# Named presets. Sizes are "active": an MoE preset activates about what its dense
# twin does per token, while holding more parameters in total.
PRESETS = {
    "tiny": dict(n_layer=2, n_head=4, dim=64, hidden_dim=192),  # ~0.1M parameters
    "small": dict(n_layer=4, n_head=4, dim=128, hidden_dim=384),  # ~0.8M parameters
    "medium": dict(n_layer=6, n_head=6, dim=192, hidden_dim=512),  # ~2.5M parameters
}


def make_config(preset: str = "small", ffn: str = "dense", attn: str = "mha", **overrides) -> GPTConfig:
    """A preset, optionally with an MoE feed-forward of the same active width, or MLA.

    With ffn="moe" the dense hidden width H is split into (top_k + shared) experts of
    width H / (top_k + shared), so active parameters per token match the dense preset.
    With attn="mla", MLA fields not given in `mla` follow DeepSeek-V2's proportions
    for the preset's head size dim / n_head (MLAConfig.v2_ratios).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")
    kw = {**PRESETS[preset], **overrides}
    moe_kw = kw.pop("moe", None) or {}
    if ffn == "moe" and not isinstance(moe_kw, MoEConfig):
        moe_kw = dict(moe_kw)
        k, s = moe_kw.get("top_k", 2), moe_kw.get("n_shared_experts", 1)
        moe_kw.setdefault("expert_dim", kw["hidden_dim"] // (k + s))
        moe_kw = MoEConfig(dim=kw["dim"], **moe_kw)
    mla_kw = kw.pop("mla", None) or {}
    if attn == "mla" and not isinstance(mla_kw, MLAConfig):
        mla_kw = MLAConfig.v2_ratios(kw["dim"] // kw["n_head"], **mla_kw)
    return GPTConfig(ffn=ffn, moe=moe_kw if ffn == "moe" else None, attn=attn,
                     mla=mla_kw if attn == "mla" else None, **kw)


# -------------------------------------------------------------------- blocks


class KVCache:
    """Keys and values of every position generated so far, one per block."""

    def __init__(self, batch: int, n_head: int, max_len: int, hs: int, device, dtype):
        self.k = torch.zeros(batch, n_head, max_len, hs, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def new_cache(self, batch: int, max_len: int, device, dtype) -> KVCache:
        return KVCache(batch, self.n_head, max_len, self.wo.in_features // self.n_head, device, dtype)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, start: int):
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
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(rearrange(y, "b h t d -> b t (h d)"))  # (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(cfg.dim), RMSNorm(cfg.dim)
        self.attn = MLA(cfg.dim, cfg.n_head, cfg.mla) if cfg.attn == "mla" else Attention(cfg)
        self.ffn = MoE(cfg.moe) if cfg.ffn == "moe" else SwiGLU(cfg.dim, cfg.hidden_dim)

    def forward(self, x, cos, sin, mask, cache=None, start=0, real=None, seq=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, start)
        h = self.ffn_norm(x)
        return x + (self.ffn(h, real, seq) if isinstance(self.ffn, MoE) else self.ffn(h))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim)
        # K multi-token prediction modules; their blocks are dense even in an MoE model (mtp.py)
        dense = GPTConfig(**{**cfg.to_dict(), "ffn": "dense", "moe": None})
        self.mtp = nn.ModuleList(MTPModule(cfg.dim, Block(dense)) for _ in range(cfg.mtp_depth))
        rot = cfg.mla.qk_rope_head_dim if cfg.attn == "mla" else cfg.dim // cfg.n_head  # rotated width
        cos, sin = rope_tables(rot, cfg.block_size, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: shrink residual projections by depth
            if name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    # -------------------------------------------------------------- forward
    def forward(
        self,
        idx: torch.Tensor,
        pad_mask: torch.Tensor | None = None,
        caches: list | None = None,
        start: int = 0,
        segments: torch.Tensor | None = None,
        with_mtp: bool = False,
    ):
        """Logits (B, T, V) for tokens idx (B, T) at positions start..start+T-1.

        pad_mask (B, start+T), True for real tokens, hides left padding from
        attention; rotary positions make a left-padded row compute exactly what the
        unpadded row would. caches: one per block (new_caches), for generation.
        segments (B, T), for packed training rows (toyds/train.py: pack): the number
        of the sequence each token belongs to, -1 for padding. A token attends only
        within its own sequence and its rotary position restarts at 0 there, so a
        packed row computes exactly what its sequences would one per row.
        with_mtp: return (logits, [MTP logits of depth k, (B, T-k, V)]) for training.
        """
        if with_mtp and segments is not None:
            raise ValueError("multi-token prediction does not take packed rows yet: train with TrainConfig(pack=False)")
        h = self.features(idx, pad_mask, caches, start, segments)  # (B, T, D)
        return (self.head(h), mtp_logits(self, idx, h)) if with_mtp else self.head(h)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The output head, shared with the MTP modules. (..., D) -> (..., V)"""
        # tied embeddings: the output layer reuses the input embedding matrix
        return h @ self.embed.weight.T  # (..., V)

    def features(self, idx, pad_mask=None, caches=None, start=0, segments=None) -> torch.Tensor:
        """The final normalised hidden states (B, T, D), before the output layer."""
        B, T = idx.shape
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size={self.cfg.block_size}")
        seq = None  # which sequence each position belongs to, for the MoE's sequence-wise balancing
        if segments is None:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]  # (T, hs or qk_rope_head_dim)
            mask = self._attention_mask(pad_mask, B, T, start, idx.device)
            real = pad_mask[:, start:] if pad_mask is not None else idx != self.cfg.pad_id  # (B, T)
        else:
            pos, mask = segment_layout(segments)  # (B, T), (B, 1, T, T)
            cos, sin = self.rope_cos[pos][:, None], self.rope_sin[pos][:, None]  # (B, 1, T, hs)
            real = segments >= 0  # (B, T)
            seq = (torch.arange(B, device=idx.device)[:, None] * T + segments.clamp(min=0)).flatten()  # (B*T,)
        x = self.embed(idx)  # (B, T, D)
        real = None if bool(real.all()) else real.flatten()  # (B*T,) which positions an MoE routes: all but padding
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, caches[i] if caches else None, start, real, seq)
        return self.norm(x)  # (B, T, D)

    @staticmethod
    def _attention_mask(pad_mask, B, T, start, device):
        if pad_mask is None:
            if start == 0:
                return "causal"
            if T == 1:
                return None
            # several new tokens after a cache (speculative decoding): "causal" would align
            # query 0 with key 0, so build the mask with every position real
            pad_mask = torch.ones(B, start + T, dtype=torch.bool, device=device)
        S = start + T
        if pad_mask.shape != (B, S):
            raise ValueError(f"pad_mask has shape {tuple(pad_mask.shape)}, expected {(B, S)}")
        q_pos = torch.arange(start, S, device=device)[:, None]  # (T, 1)
        k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
        # a query sees earlier real tokens, and always itself (so a pad row is not empty)
        allowed = (k_pos <= q_pos) & pad_mask[:, None, :] | (k_pos == q_pos)  # (B, T, S)
        return allowed[:, None]  # (B, 1, T, S)

    def new_caches(self, batch: int, max_len: int) -> list:
        """One cache per block, of the kind its attention needs (KVCache, or mla.py's)."""
        p = self.embed.weight
        return [b.attn.new_cache(batch, max_len, p.device, p.dtype) for b in self.blocks]

    # ----------------------------------------------------------------- MoE
    def moe_layers(self) -> list[MoE]:
        """The MoE feed-forwards (toyds/balance.py reads their balancing losses and loads)."""
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    # ------------------------------------------------------------ parameters
    def params_total(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def params_active(self) -> int:
        """Parameters one token uses: all of them, minus the routed experts it skips."""
        skipped = sum(m.params_total() - m.params_active() for m in self.moe_layers())
        return self.params_total() - skipped
