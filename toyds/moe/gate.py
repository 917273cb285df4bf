"""DeepSeek-V3's gate: score the routed experts, keep the best groups, pick the top K.

The gate (V3 report, section 2.1.2; `Gate` in V3's inference/model.py) scores each
of the E routed experts for a token and keeps K of them:

    s_i = sigmoid(x . w_i)   (V3)    or    s_i = softmax_i(x W^T)   (DeepSeek-V2)
    chosen = topK_i(s_i + b_i),        g_i = s_i / sum_{j in chosen} s_j  (sigmoid) , times route_scale

The bias b (moe/balance.py's bias rule) changes which experts are *chosen*, never
their weights. With groups (V3's node-limited routing in miniature) only the
`topk_groups` best groups are eligible; a group scores the sum of its top-2 biased
scores when a bias is in use (as V3's code does), else its best expert. How the toy
differs: 4-8 experts, not 256; no device or node limit. `route` is a pure function,
so Gate and the workshop's `gate` exercise share it.

Shapes: N tokens, D model width, E routed experts, K top-k.
"""

from __future__ import annotations

import torch
from torch import nn

from toyds.moe import balance
from toyds.moe.config import MoEConfig


class Gate(nn.Module):
    """Scores the E routed experts for each token and picks K of them."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.randn(cfg.n_experts, cfg.dim) * 0.02)  # (E, D)
        # V3's balancing bias: changes which experts are chosen, never their weights,
        # and is set by a rule, not by gradients, so it is a buffer
        self.register_buffer("bias", torch.zeros(cfg.n_experts))  # (E,)
        self.biased = balance.uses_bias(cfg.balance)  # does a balancing rule steer selection with the bias?

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        # s_i = softmax_i(x W^T)  or  s_i = sigmoid(x . w_i)
        logits = x @ self.weight.T  # (N, E)
        return logits.softmax(-1) if self.cfg.score_func == "softmax" else logits.sigmoid()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, D) -> (weights (N, K), indices (N, K))."""
        return self.route(self.scores(x))

    def route(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Affinity scores (N, E) -> (weights (N, K), indices (N, K)); the MoE keeps the
        scores, because the auxiliary loss is made of them too."""
        return route(scores, self.cfg, self.bias if self.biased else None)


def route(scores: torch.Tensor, cfg: MoEConfig, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3's routing of affinity scores (N, E) -> (weights (N, K), indices (N, K)).

    bias (E,), if given, is added to the scores for *choosing* experts only: the
    weights are the chosen experts' unbiased scores. With cfg.n_groups > 1 only the
    cfg.topk_groups best groups are eligible. cfg is a MoEConfig (moe/config.py).
    """
    biased = bias is not None
    choice = scores + bias if biased else scores  # what selection sees
    if cfg.n_groups > 1:
        grouped = choice.view(len(scores), cfg.n_groups, -1)  # (N, groups, E / groups)
        if biased:  # group score = sum of its top-2 biased scores (as V3's code does with a bias)
            group_scores = grouped.topk(2, dim=-1).values.sum(-1)  # (N, groups)
        else:  # group score = its best expert
            group_scores = grouped.amax(-1)  # (N, groups)
        best = group_scores.topk(cfg.topk_groups, dim=-1).indices  # (N, topk_groups)
        shut = torch.ones_like(group_scores, dtype=torch.bool).scatter(1, best, False)
        choice = grouped.masked_fill(shut[..., None], float("-inf")).flatten(1)  # (N, E)
    indices = choice.topk(cfg.top_k, dim=-1).indices  # (N, K)
    weights = scores.gather(1, indices)  # (N, K): unbiased scores of the chosen experts
    if cfg.score_func == "sigmoid":  # g_i = s_i / sum_{j in topK} s_j
        weights = weights / weights.sum(-1, keepdim=True)
    return weights * cfg.route_scale, indices
