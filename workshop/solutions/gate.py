"""Solution to the `gate` exercise: toyds.moe.gate's own code, unchanged (route).

    toyds check gate --file workshop/solutions/gate.py
"""

from __future__ import annotations

import torch

from toyds.moe.config import MoEConfig


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
