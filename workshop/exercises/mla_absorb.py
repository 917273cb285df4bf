"""Exercise `mla_absorb`: Multi-head Latent Attention's absorbed attention, for one step.

MLA (DeepSeek-V2 section 2.1, V3 section 2.1.1) caches one small latent c_KV per token
(width c) instead of every head's keys and values, and a shared rotary key k^R. Head i
rebuilds its keys and values from the latent: k^C_i = W_UK_i c, v_i = W_UV_i c. But
it never has to: matrix products can be regrouped (V2 section 2.1.3),

    q^C_i . (W_UK_i c_s) = (W_UK_i^T q^C_i) . c_s          absorb W_UK into the query
    scores_ts = ((W_UK_i^T q^C_t) . c_s + q^R_t . k^R_s) * softmax_scale
    o_i = sum_s p_ts W_UV_i c_s = W_UV_i (sum_s p_ts c_s)   attend over latents, expand once

so attention runs in latent space, straight from the cache of c_KV and k^R.
wkv_b, MLA's up-projection, holds per head i the rows [W_UK_i; W_UV_i]:
wkv_b.view(nh, dn + dv, c)[i, :dn] is W_UK_i (dn, c) and [i, dn:] is W_UV_i (dv, c).

Write `absorbed_attention` below; it keeps the name and signature of
toyds.efficient.mla.absorbed_attention (which MLA calls with attn_impl="absorb"), so your version
drops into the library unchanged. The check compares it with expanding the keys and
values and attending as usual.

    toyds check mla_absorb

Notebook: notebooks/08_cheaper_to_run.ipynb. About 30 minutes.
"""

from __future__ import annotations

import torch

from toyds.efficient.mla import masked_softmax# noqa: F401  masked_softmax(scores (B, nh, T, S), mask) -> probabilities


def absorbed_attention(q_nope, q_pe, kv, k_pe, wkv_b: torch.Tensor, softmax_scale: float, mask=None) -> torch.Tensor:
    """Every head's attention output (B, nh, T, dv), computed in latent space ("absorb").

    q_nope (B, nh, T, dn), q_pe (B, nh, T, dr) rotated; kv (B, S, c) the normalised
    latents c_KV and k_pe (B, S, dr) the rotated shared key, cached or not; wkv_b
    (nh * (dn + dv), c) the weight of MLA.wkv_b, rows [W_UK_i; W_UV_i] per head;
    mask as in Attention ("causal", None or bool (B, 1, T, S)).
    """
    # TODO 1. w_uk (nh, dn, c) and w_uv (nh, dv, c) from wkv_b
    # TODO 2. q_lat (B, nh, T, c) = W_UK_i^T q_nope        (torch.einsum is your friend)
    # TODO 3. scores (B, nh, T, S) = (q_lat . c_s + q_pe . k_pe_s) * softmax_scale; p = masked_softmax(scores, mask)
    # TODO 4. o_lat (B, nh, T, c) = sum_s p_s c_s;  return W_UV_i o_lat (B, nh, T, dv)
    raise NotImplementedError("write absorbed_attention: see the TODOs above")
