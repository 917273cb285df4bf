"""Solution to the `mla_absorb` exercise: toyds.efficient.mla's own code, unchanged (absorbed_attention).

    toyds check mla_absorb --file workshop/solutions/mla_absorb.py
"""

from __future__ import annotations

import torch

from toyds.efficient.mla import masked_softmax


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
