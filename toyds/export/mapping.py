"""A toyds model as a transformers model: which class, which config, which tensor goes where.

Three transformers classes compute exactly what a toyds GPT computes (in float32, to
rounding), so a model can leave toyds tensor for tensor:

    dense, MHA            LlamaForCausalLM        rotate-half rotary, SwiGLU, RMSNorm, tied embeddings
    MLA (dense or MoE)    DeepseekV3ForCausalLM   rope_interleave=False: toyds rotates halves, V3 pairs
    MHA + sigmoid MoE     Glm4MoeForCausalLM      partial_rotary_factor=1.0: every head channel rotates

The mapping, per block i (model.layers.i.): attn_norm -> input_layernorm, ffn_norm ->
post_attention_layernorm; MHA's fused wqkv splits into q_proj, k_proj, v_proj (its rows
are [W_Q; W_K; W_V]); MLA's wq / wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo are V3's
q_proj / q_a_proj, q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj,
o_proj (the same names as V3's own weights, under other words); SwiGLU w1, w3, w2 are
gate_proj, up_proj, down_proj; the MoE's gate is mlp.gate, its balancing bias the gate's
e_score_correction_bias (zeros without the bias rule), its experts stacked as
experts.gate_up_proj (E, 2H, D) and experts.down_proj (E, D, H), its S shared experts one
MLP of width S H (toyds's layout already). transformers writes experts one per expert on
disk (experts.e.gate_proj.weight, ...), as DeepSeek-V3's checkpoints are.

What has no exact target is refused, naming the setting: multi-token prediction heads,
softmax routing (both classes route with sigmoid), group-limited routing without the
bias rule (transformers scores a group by its top-2 sum, toyds then by its best expert),
and int8 weights. The functions here are pure (dicts and tensors, no transformers), so
tests can check them without the `hf` extra.
"""

from __future__ import annotations

import torch

from toyds.core.tokenizer import BOS, EOS, PAD, VOCAB
from toyds.moe import balance

TARGETS = {"llama": "LlamaForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM", "glm4_moe": "Glm4MoeForCausalLM"}
RMS_EPS = 1e-6  # toyds's RMSNorm eps (core/layers.py)


class Unexportable(ValueError):
    """The model has a part transformers has no exact class for; the message says which, and what would export."""


def target(cfg) -> str:
    """'llama', 'deepseek_v3' or 'glm4_moe' for a GPTConfig; Unexportable otherwise."""
    if cfg.mtp_depth:
        raise Unexportable(f"GPTConfig.mtp_depth={cfg.mtp_depth}: multi-token prediction heads have no transformers "
                           f"target; export a model trained with mtp_depth=0")
    if cfg.ffn == "moe":
        moe = cfg.moe
        if moe.score_func != "sigmoid":
            raise Unexportable(f"MoEConfig.score_func={moe.score_func!r}: transformers' DeepseekV3 and Glm4Moe routers "
                               f"score experts with sigmoid; train with score_func='sigmoid' (V3's gate) to export")
        if moe.n_groups > 1 and not balance.uses_bias(moe.balance):
            raise Unexportable(f"MoEConfig.n_groups={moe.n_groups} with balance={moe.balance!r}: without the bias rule "
                               f"toyds scores a group by its best expert, transformers by its top two; use a balance "
                               f"with 'bias' (V3's) or n_groups=1 to export")
    if cfg.attn == "mla":
        return "deepseek_v3"
    if cfg.attn == "mha":
        return "glm4_moe" if cfg.ffn == "moe" else "llama"
    raise Unexportable(f"GPTConfig.attn={cfg.attn!r} has no transformers target; 'mha' and 'mla' export")


def hf_config(cfg) -> dict:
    """The keyword arguments of the target's transformers config class."""
    kind = target(cfg)
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
                  num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
                  hidden_act="silu", max_position_embeddings=cfg.block_size, rms_norm_eps=RMS_EPS,
                  tie_word_embeddings=True, attention_bias=False, bos_token_id=VOCAB.index(BOS),
                  eos_token_id=VOCAB.index(EOS), pad_token_id=VOCAB.index(PAD),
                  rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_base)})
    moe = cfg.moe
    routed = {} if moe is None else dict(
        moe_intermediate_size=moe.expert_dim, n_shared_experts=moe.n_shared_experts, n_routed_experts=moe.n_experts,
        num_experts_per_tok=moe.top_k, n_group=moe.n_groups, topk_group=moe.topk_groups,
        routed_scaling_factor=float(moe.route_scale), norm_topk_prob=True, first_k_dense_replace=0)
    if kind == "llama":
        return {**common, "head_dim": cfg.dim // cfg.n_head, "mlp_bias": False}
    if kind == "glm4_moe":
        rope = {**common["rope_parameters"], "partial_rotary_factor": 1.0}
        return {**common, **routed, "rope_parameters": rope, "head_dim": cfg.dim // cfg.n_head, "use_qk_norm": False}
    mla = cfg.attn_config
    if moe is None:  # every layer dense: first_k_dense_replace covers them all
        routed = dict(first_k_dense_replace=cfg.n_layer, n_routed_experts=1, num_experts_per_tok=1, n_group=1,
                      topk_group=1, n_shared_experts=1, moe_intermediate_size=cfg.hidden_dim)
    return {**common, **routed, "kv_lora_rank": mla.kv_lora_rank, "q_lora_rank": mla.q_lora_rank or None,
            "qk_rope_head_dim": mla.qk_rope_head_dim, "qk_nope_head_dim": mla.qk_nope_head_dim,
            "v_head_dim": mla.v_head_dim, "rope_interleave": False}


# toyds name -> transformers name, per block, for tensors that only change name
_RENAMES = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
            "attn.wo.weight": "self_attn.o_proj.weight", "attn.wq.weight": "self_attn.q_proj.weight",
            "attn.wq_a.weight": "self_attn.q_a_proj.weight", "attn.q_norm.weight": "self_attn.q_a_layernorm.weight",
            "attn.wq_b.weight": "self_attn.q_b_proj.weight", "attn.wkv_a.weight": "self_attn.kv_a_proj_with_mqa.weight",
            "attn.kv_norm.weight": "self_attn.kv_a_layernorm.weight", "attn.wkv_b.weight": "self_attn.kv_b_proj.weight",
            "ffn.w1.weight": "mlp.gate_proj.weight", "ffn.w3.weight": "mlp.up_proj.weight",
            "ffn.w2.weight": "mlp.down_proj.weight", "ffn.gate.weight": "mlp.gate.weight",
            "ffn.gate.bias": "mlp.gate.e_score_correction_bias",
            "ffn.shared_experts.w1.weight": "mlp.shared_experts.gate_proj.weight",
            "ffn.shared_experts.w3.weight": "mlp.shared_experts.up_proj.weight",
            "ffn.shared_experts.w2.weight": "mlp.shared_experts.down_proj.weight"}
_TOP = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}


def to_hf(state: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """A toyds GPT's state_dict as the target transformers model's (experts stacked, as it holds them)."""
    out = {hf: state[name] for name, hf in _TOP.items()}
    out["lm_head.weight"] = state["embed.weight"]  # tied
    for i in range(cfg.n_layer):
        mine, theirs = f"blocks.{i}.", f"model.layers.{i}."
        for name, hf in _RENAMES.items():
            if mine + name in state:
                out[theirs + hf] = state[mine + name]
        if mine + "attn.wqkv.weight" in state:  # rows [W_Q; W_K; W_V], each (D, D)
            q, k, v = state[mine + "attn.wqkv.weight"].chunk(3, dim=0)
            out.update({theirs + f"self_attn.{n}_proj.weight": t for n, t in zip("qkv", (q, k, v))})
        if cfg.ffn == "moe":
            E = cfg.moe.n_experts
            if not balance.uses_bias(cfg.moe.balance):  # toyds's gate reads its bias only under the bias rule
                out[theirs + "mlp.gate.e_score_correction_bias"] = torch.zeros(E)
            w = lambda e, n: state[f"{mine}ffn.experts.{e}.{n}.weight"]
            # gate_up_proj[e] = [W1_e; W3_e] (2H, D): transformers chunks it into gate, then up
            out[theirs + "mlp.experts.gate_up_proj"] = torch.stack([torch.cat([w(e, "w1"), w(e, "w3")]) for e in range(E)])
            out[theirs + "mlp.experts.down_proj"] = torch.stack([w(e, "w2") for e in range(E)])  # (E, D, H)
            if not cfg.moe.n_shared_experts:  # transformers still builds the shared MLP, of width 0: it adds 0
                zero = torch.zeros(0, cfg.dim)
                out.update({theirs + f"mlp.shared_experts.{n}.weight": t for n, t in
                            (("gate_proj", zero), ("up_proj", zero), ("down_proj", zero.T))})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def from_hf(state: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """The inverse of to_hf: a transformers state_dict as the toyds GPT of config cfg holds it."""
    out = {name: state[hf] for name, hf in _TOP.items()}
    for i in range(cfg.n_layer):
        mine, theirs = f"blocks.{i}.", f"model.layers.{i}."
        for name, hf in _RENAMES.items():
            zero_width = cfg.moe is not None and not cfg.moe.n_shared_experts and name.startswith("ffn.shared")
            skip = (cfg.ffn == "moe" and name.startswith("ffn.w")) or zero_width
            if theirs + hf in state and not skip:
                out[mine + name] = state[theirs + hf]
        if cfg.attn == "mha":
            out[mine + "attn.wqkv.weight"] = torch.cat([state[theirs + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            out.pop(mine + "attn.wq.weight", None)
        if cfg.ffn == "moe":
            gate_up, down = state[theirs + "mlp.experts.gate_up_proj"], state[theirs + "mlp.experts.down_proj"]
            for e in range(cfg.moe.n_experts):
                w1, w3 = gate_up[e].chunk(2, dim=0)
                out.update({f"{mine}ffn.experts.{e}.w1.weight": w1, f"{mine}ffn.experts.{e}.w3.weight": w3,
                            f"{mine}ffn.experts.{e}.w2.weight": down[e]})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}
