import math

import pytest
import torch

from toyds.core.model import GPT, GPTConfig, make_config
from toyds.core.rope import rope_tables
from toyds.core.sampling import generate, left_pad
from toyds.core.tokenizer import Tokenizer
from toyds.efficient.mla import MLA, MLAConfig, cache_bytes_per_token
from toyds.train.checkpoint import load_checkpoint, save_checkpoint

tok = Tokenizer()
IMPLS = ["naive", "absorb"]


def mla_model(impl="absorb", q_lora_rank=0, **kw):
    torch.manual_seed(0)
    return GPT(make_config("tiny", attn="mla", attn_config=dict(attn_impl=impl, q_lora_rank=q_lora_rank), **kw)).eval()


def with_impl(model, impl):
    """The same weights, run through the other inference path."""
    cfg = model.cfg.to_dict()
    cfg["attn_config"]["attn_impl"] = impl
    twin = GPT(GPTConfig(**cfg)).eval()
    twin.load_state_dict(model.state_dict())
    return twin


# ------------------------------------------------------------ plain reference


def reference_mla(attn: MLA, h: torch.Tensor, base: float) -> torch.Tensor:
    """DeepSeek-V2 section 2.1 (eqs. 9-19) with loops over batch, position and head,
    an explicit softmax, and the rotate-half rotation written out. Weights by V3's names."""
    cfg, nh = attn.cfg, attn.n_head
    dn, dr, dv, c = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    B, T, D = h.shape

    def rms(v, g, eps=1e-6):
        return v / torch.sqrt((v * v).mean() + eps) * g

    def rope(v, t):  # channel j pairs with j + dr/2, rotated by t * base^(-2j/dr)
        out = v.clone()
        for j in range(dr // 2):
            a = t * base ** (-2 * j / dr)
            x1, x2 = v[j], v[j + dr // 2]
            out[j], out[j + dr // 2] = x1 * math.cos(a) - x2 * math.sin(a), x2 * math.cos(a) + x1 * math.sin(a)
        return out

    W_DKV, W_KR = attn.wkv_a.weight[:c], attn.wkv_a.weight[c:]
    W_UKV = attn.wkv_b.weight.view(nh, dn + dv, c)
    W_Q = (attn.wq if cfg.q_lora_rank == 0 else attn.wq_b).weight.view(nh, dn + dr, -1)
    out = torch.zeros(B, T, D)
    for b in range(B):
        c_KV = [rms(W_DKV @ h[b, t], attn.kv_norm.weight) for t in range(T)]  # c^KV_t = W^DKV h_t (normalised)
        k_R = [rope(W_KR @ h[b, t], t) for t in range(T)]  # k^R_t = RoPE(W^KR h_t)
        for t in range(T):
            c_Q = h[b, t] if cfg.q_lora_rank == 0 else rms(attn.wq_a.weight @ h[b, t], attn.q_norm.weight)
            heads = []
            for i in range(nh):
                q = torch.cat([W_Q[i, :dn] @ c_Q, rope(W_Q[i, dn:] @ c_Q, t)])  # [q^C_ti; q^R_ti]
                keys = [torch.cat([W_UKV[i, :dn] @ c_KV[s], k_R[s]]) for s in range(t + 1)]  # [k^C_si; k^R_s]
                scores = torch.stack([q @ k / math.sqrt(dn + dr) for k in keys])
                p = torch.exp(scores - scores.max())
                p = p / p.sum()
                heads.append(sum(p[s] * (W_UKV[i, dn:] @ c_KV[s]) for s in range(t + 1)))  # o_ti
            out[b, t] = attn.wo.weight @ torch.cat(heads)  # u_t = W^O [o_t1; ...; o_tnh]
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("q_lora_rank", [0, 6])
def test_mla_matches_the_paper_equations_written_as_loops(impl, q_lora_rank):
    torch.manual_seed(1)
    cfg = MLAConfig(kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=6,
                    q_lora_rank=q_lora_rank, attn_impl=impl)
    attn = MLA(dim=16, n_head=2, cfg=cfg)
    for p in attn.parameters():  # weights large enough that attention is far from uniform
        torch.nn.init.normal_(p, std=0.4)
    h = torch.randn(2, 5, 16)
    cos, sin = rope_tables(4, 5, 10000.0)
    got = attn(h, cos, sin, "causal", None, 0)
    assert torch.allclose(got, reference_mla(attn, h, 10000.0), atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_per_row_rotary_tables_broadcast_like_shared_ones(impl):
    # packed training rows give every row its own positions: tables (B, 1, T, dr)
    torch.manual_seed(1)
    attn = MLA(16, 2, MLAConfig(kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=6,
                                attn_impl=impl))
    h = torch.randn(3, 5, 16)
    cos, sin = rope_tables(4, 5, 10000.0)
    shared = attn(h, cos, sin, "causal", None, 0)
    per_row = attn(h, cos.expand(3, 1, 5, 4), sin.expand(3, 1, 5, 4), "causal", None, 0)
    assert torch.allclose(shared, per_row, atol=1e-6)


# ------------------------------------------------------ naive == absorb == full


@pytest.mark.parametrize("q_lora_rank", [0, 8])
def test_naive_and_absorb_give_the_same_logits(q_lora_rank):
    naive = mla_model("naive", q_lora_rank)
    absorb = with_impl(naive, "absorb")
    x = torch.randint(3, 53, (3, 14))
    assert torch.allclose(naive(x), absorb(x), atol=1e-5)
    ids, mask = left_pad([[1, 5, 6, 7, 8], [1, 9, 10]], 0, "cpu")
    assert torch.allclose(naive(ids, pad_mask=mask), absorb(ids, pad_mask=mask), atol=1e-5)


@pytest.mark.parametrize("attn", ["mha", "naive", "absorb"])
def test_cache_in_steps_and_chunks_matches_the_full_sequence(attn):
    # chunks of several tokens after a cache are what speculative decoding (mtp.py) verifies
    m = mla_model(attn) if attn != "mha" else GPT(make_config("tiny")).eval()
    x = torch.randint(3, 53, (2, 12))
    caches = m.new_caches(2, 12)
    steps = [m(x[:, :4], caches=caches)]  # prefill 4, then one token, then chunks of 3 and 4
    steps += [m(x[:, 4:5], caches=caches, start=4), m(x[:, 5:8], caches=caches, start=5)]
    steps += [m(x[:, 8:12], caches=caches, start=8)]
    assert torch.allclose(torch.cat(steps, 1), m(x), atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_cache_with_left_padding_matches_the_full_sequence(impl):
    m = mla_model(impl)
    a, b = [1, 5, 6, 7, 8, 9, 10], [1, 9, 10]
    ids, mask = left_pad([a, b], 0, "cpu")  # (2, 7), row 1 padded by 4
    full = m(ids, pad_mask=mask)
    assert torch.allclose(full[1, 4:], m(torch.tensor([b]))[0], atol=1e-5)  # padding changes nothing
    caches = m.new_caches(2, 7)
    steps = [m(ids[:, :3], pad_mask=mask[:, :3], caches=caches)]
    steps += [m(ids[:, t : t + 1], pad_mask=mask[:, : t + 1], caches=caches, start=t) for t in range(3, 5)]
    steps += [m(ids[:, 5:7], pad_mask=mask, caches=caches, start=5)]
    got = torch.cat(steps, 1)
    assert torch.allclose(got[mask], full[mask], atol=1e-5)  # pad rows attend to nothing real: skip them


@pytest.mark.parametrize("impl", IMPLS)
def test_generate_with_and_without_cache_agree(impl):
    m = mla_model(impl)
    prompts = [tok.encode("<bos>12+34="), tok.encode("<bos>7+8="), tok.encode("<bos>1234+5678=")]
    a = generate(m, prompts, 20, temperature=0)
    b = generate(m, prompts, 20, temperature=0, use_cache=False)
    c = generate(with_impl(m, "naive" if impl == "absorb" else "absorb"), prompts, 20, temperature=0)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.sequences, c.sequences)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


# ------------------------------------------------------------------- the cache


def test_cache_bytes_per_token_follow_the_formulas():
    B, L, f32 = 3, 20, 4
    mha = GPT(make_config("tiny"))  # n_h = 4, d_h = 16
    nh, hs = 4, 16
    c = cache_bytes_per_token
    # MHA: 2 n_h d_h numbers per token per layer (V2 Table 1)
    assert all(c(k, B, L) == 2 * nh * hs * f32 for k in mha.new_caches(B, L))
    cfg = mla_model().cfg.attn_config  # V2 ratios at d_h = 16: d_c = 64, d_rope = 8, d_nope = d_v = 16
    assert (cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim) == (64, 8, 16, 16)
    # MLA absorbed: d_c + d_rope numbers (V2 Table 1)
    assert all(c(k, B, L) == (64 + 8) * f32 for k in mla_model("absorb").new_caches(B, L))
    # MLA naive: per-head keys n_h (d_nope + d_rope) and values n_h d_v
    assert all(c(k, B, L) == (nh * (16 + 8) + nh * 16) * f32 for k in mla_model("naive").new_caches(B, L))


def test_rotary_tables_are_built_at_the_rope_width():
    m = mla_model()
    assert m.rope_cos.shape == (m.cfg.block_size, m.cfg.attn_config.qk_rope_head_dim)


def test_param_count_by_hand():
    m = mla_model(q_lora_rank=8)  # V=53, D=64, H=192, 2 layers, 4 heads; c=64, dn=dv=16, dr=8, q rank 8
    V, D, H, L, nh, c, dn, dr, dv, r = 53, 64, 192, 2, 4, 64, 16, 8, 16, 8
    attn = D * r + r + r * nh * (dn + dr) + D * (c + dr) + c + c * nh * (dn + dv) + nh * dv * D
    per_block = attn + 3 * D * H + 2 * D
    assert m.params_total() == V * D + L * per_block + D


def test_checkpoint_round_trip(tmp_path):
    m = mla_model("naive", q_lora_rank=8, mtp_depth=1)
    path = save_checkpoint(tmp_path / "mla.pt", m)
    back, _, _ = load_checkpoint(path)
    assert back.cfg == m.cfg and isinstance(back.cfg.attn_config, MLAConfig)
    x = torch.randint(3, 53, (2, 9))
    assert torch.equal(back.eval()(x), m(x))
    assert any(k.startswith("blocks.0.attn.wkv_b") for k in back.state_dict())


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(attn_impl="fast"), "attn_impl must be 'naive' or 'absorb', got 'fast'"),
        (dict(kv_lora_rank=0), "kv_lora_rank must be a positive integer, got 0"),
        (dict(qk_rope_head_dim=5), "qk_rope_head_dim=5 must be even"),
        (dict(q_lora_rank=-1), "q_lora_rank must be an integer >= 0"),
    ],
)
def test_mla_config_errors(kw, match):
    base = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
    with pytest.raises(ValueError, match=match):
        MLAConfig(**{**base, **kw})


def test_gpt_config_errors():
    mla = MLAConfig.v2_ratios(16)
    with pytest.raises(ValueError, match=r"attn must be one of \['mha', 'mla'\] \(core/attention.py\), got 'gqa'"):
        GPTConfig(attn="gqa")
    with pytest.raises(ValueError, match="attn='mla' needs an MLAConfig"):
        GPTConfig(attn="mla")
    with pytest.raises(ValueError, match="attn='mha' takes no attn_config"):
        GPTConfig(attn_config=mla)
    GPTConfig(attn="mla", attn_config=mla, dim=60, n_head=7)  # MLA heads need not split dim


def test_absorbed_attention_equals_expanding_keys_and_values():
    from toyds.efficient.mla import absorbed_attention

    torch.manual_seed(0)
    B, nh, T, S, dn, dr, dv, c = 2, 3, 2, 5, 4, 2, 3, 6
    q_nope, q_pe = torch.randn(B, nh, T, dn), torch.randn(B, nh, T, dr)
    kv, k_pe, wkv_b = torch.randn(B, S, c), torch.randn(B, S, dr), torch.randn(nh * (dn + dv), c)
    w = wkv_b.view(nh, dn + dv, c)
    k = torch.cat([torch.einsum("hdc,bsc->bhsd", w[:, :dn], kv), k_pe[:, None].expand(B, nh, S, dr)], -1)
    v = torch.einsum("hdc,bsc->bhsd", w[:, dn:], kv)  # (B, nh, S, dv)
    q = torch.cat([q_nope, q_pe], -1)
    allowed = torch.ones(T, S, dtype=torch.bool).tril(S - T)
    p = (q @ k.transpose(-1, -2) * 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
    assert torch.allclose(absorbed_attention(q_nope, q_pe, kv, k_pe, wkv_b, 0.5, "causal"), p @ v, atol=1e-5)
