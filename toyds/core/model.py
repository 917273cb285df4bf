"""A tiny decoder-only transformer, nanoGPT-shaped, with DeepSeek-style parts.

The model every toyds experiment trains: token embedding -> n_layer blocks of
(RMSNorm -> causal self-attention with rotary positions) and (RMSNorm ->
feed-forward), each wrapped in a residual connection -> RMSNorm -> logits through
the tied embedding matrix:

    x_0 = Emb(t);   x' = x + Attn(RMSNorm(x));   x'' = x' + FFN(RMSNorm(x'));   logits = RMSNorm(x_L) Emb^T

Three slots take DeepSeek's parts, each chosen in GPTConfig: the attention
(`attn`: "mha" or V2/V3's Multi-head Latent Attention "mla", from the registry in
core/attention.py), the feed-forward (`ffn`: a dense SwiGLU, or a DeepSeekMoE layer,
toyds/moe/layer.py, as V3 swaps most of its dense FFNs, section 2.1) and the heads
(`mtp_depth=K` adds V3's multi-token prediction modules, toyds/efficient/mtp.py).
How the toy differs from DeepSeek-V3: a character vocabulary (core/tokenizer.py);
widths in the tens, not thousands; 2-6 layers, not 61. Generation keeps a KV cache,
so each new token costs one position of attention (core/sampling.py).

Shapes: B batch, T time (positions in this call), S positions attended to
(cache + T), D model width, nh heads, hs head size (D / nh), V vocabulary.
Shown in examples/00_arithmetic.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from toyds.core.attention import ATTENTIONS
from toyds.core.layers import RMSNorm, SwiGLU
from toyds.core.rope import rope_tables, segment_layout
from toyds.core.tokenizer import PAD, VOCAB
from toyds.efficient.mtp import MTPModule, mtp_logits
from toyds.moe.config import MoEConfig
from toyds.moe.layer import MoE


@dataclass
class GPTConfig:
    vocab_size: int = len(VOCAB)  # tokens in toyds.core.tokenizer.VOCAB
    block_size: int = 128  # the longest sequence (prompt + completion) the model sees
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    dim: int = 128  # model width D
    hidden_dim: int = 384  # SwiGLU hidden width of the dense feed-forward
    ffn: str = "dense"  # "dense" SwiGLU or "moe" (mixture of experts, toyds/moe/layer.py)
    moe: MoEConfig | None = None  # the MoE layer's config when ffn == "moe"
    rope_base: float = 10000.0  # rotary base; angles theta_i = base^(-2i/hs)
    pad_id: int = VOCAB.index(PAD)  # id of <pad>: its positions are never routed to experts nor counted in their load
    attn: str = "mha"  # an attention of core/attention.py's ATTENTIONS: "mha" or "mla"
    attn_config: Any = None  # that attention's own options (an MLAConfig for "mla", None for "mha")
    mtp_depth: int = 0  # K multi-token prediction modules (toyds/efficient/mtp.py; the paper's D); 0 = none

    def __post_init__(self):
        if isinstance(self.moe, dict):  # rebuilt from a checkpoint
            self.moe = MoEConfig.from_dict(self.moe)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "dim", "hidden_dim"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.mtp_depth, int) and self.mtp_depth >= 0):
            raise ValueError(f"GPTConfig.mtp_depth must be an integer >= 0 (0 = no MTP), got {self.mtp_depth!r}")
        if self.attn not in ATTENTIONS:
            raise ValueError(f"attn must be one of {sorted(ATTENTIONS)} (core/attention.py), got {self.attn!r}")
        kind = ATTENTIONS[self.attn]
        if isinstance(self.attn_config, dict):  # rebuilt from a checkpoint
            self.attn_config = kind.default_config(self, **self.attn_config)
        kind.check(self)
        if self.ffn not in ("dense", "moe"):
            raise ValueError(f"ffn must be 'dense' or 'moe', got {self.ffn!r}")
        if self.ffn == "moe":
            if self.moe is None:
                raise ValueError("ffn='moe' needs a MoEConfig in GPTConfig.moe")
            if self.moe.dim != self.dim:
                raise ValueError(f"MoEConfig.dim={self.moe.dim} must equal GPTConfig.dim={self.dim}")
        elif self.moe is not None:
            raise ValueError("ffn='dense' takes no MoEConfig (GPTConfig.moe must be None)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """The config a checkpoint stored, including those of toyds before its 0.1 layout,
        whose MLA options were the field `mla` (now `attn_config`)."""
        d = dict(d)
        if "mla" in d:
            legacy = d.pop("mla")
            if d.get("attn_config") is None:
                d["attn_config"] = legacy
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"the config has the unknown field {unknown[0]!r}; a GPTConfig has {sorted(known)}")
        return cls(**d)


# Named presets. Sizes are "active": an MoE preset activates about what its dense
# twin does per token, while holding more parameters in total.
PRESETS = {
    "tiny": dict(n_layer=2, n_head=4, dim=64, hidden_dim=192),  # ~0.1M parameters
    "small": dict(n_layer=4, n_head=4, dim=128, hidden_dim=384),  # ~0.8M parameters
    "medium": dict(n_layer=6, n_head=6, dim=192, hidden_dim=512),  # ~2.5M parameters
}


def make_config(preset: str = "small", ffn: str = "dense", attn: str = "mha", **overrides) -> GPTConfig:
    """A preset, optionally with an MoE feed-forward of the same active width, or another attention.

    With ffn="moe" the dense hidden width H is split into (top_k + shared) experts of
    width H / (top_k + shared), so active parameters per token match the dense preset
    (`moe` is a dict of MoEConfig fields, or a MoEConfig). With attn="mla", the options
    not given in `attn_config` (a dict) follow DeepSeek-V2's proportions for the
    preset's head size dim / n_head (MLAConfig.v2_ratios).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")
    if attn not in ATTENTIONS:
        raise ValueError(f"attn must be one of {sorted(ATTENTIONS)} (core/attention.py), got {attn!r}")
    kw = {**PRESETS[preset], **overrides}
    moe = kw.pop("moe", None) or {}
    if ffn == "moe" and not isinstance(moe, MoEConfig):
        moe = dict(moe)
        k, s = moe.get("top_k", 2), moe.get("n_shared_experts", 1)
        moe.setdefault("expert_dim", kw["hidden_dim"] // (k + s))
        moe = MoEConfig(dim=kw["dim"], **moe)
    options = kw.pop("attn_config", None)
    if options is None or isinstance(options, dict):  # fill in the attention's defaults for this width
        options = ATTENTIONS[attn].default_config(SimpleNamespace(dim=kw["dim"], n_head=kw["n_head"]), **(options or {}))
    return GPTConfig(ffn=ffn, moe=moe if ffn == "moe" else None, attn=attn, attn_config=options, **kw)


# -------------------------------------------------------------------- blocks


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(cfg.dim), RMSNorm(cfg.dim)
        self.attn = ATTENTIONS[cfg.attn].build(cfg)  # "mha" or "mla" (core/attention.py)
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
        dense = dataclasses.replace(cfg, ffn="dense", moe=None)
        self.mtp = nn.ModuleList(MTPModule(cfg.dim, Block(dense)) for _ in range(cfg.mtp_depth))
        rot = ATTENTIONS[cfg.attn].rotary_dim(cfg)  # how many channels of q and k carry position
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
        segments (B, T), for packed training rows (train/batches.py: pack): the number
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
        """One cache per block, of the kind its attention needs (KVCache, or efficient/mla.py's)."""
        p = self.embed.weight
        return [b.attn.new_cache(batch, max_len, p.device, p.dtype) for b in self.blocks]

    # ----------------------------------------------------------------- MoE
    def moe_layers(self) -> list[MoE]:
        """The MoE feed-forwards (moe/balance.py reads their balancing losses and loads)."""
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    # ------------------------------------------------------------ parameters
    def params_total(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def params_active(self) -> int:
        """Parameters one token uses: all of them, minus the routed experts it skips."""
        skipped = sum(m.params_total() - m.params_active() for m in self.moe_layers())
        return self.params_total() - skipped
