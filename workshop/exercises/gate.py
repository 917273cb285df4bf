"""Exercise `gate`: DeepSeek-V3's routing: the bias chooses, it does not weight; groups limit the choice.

After the gate scores the E routed experts for each token (softmax, or V3's sigmoid),
`route` picks K of them and their weights (DeepSeek-V3 report, section 2.1.2):

    choice = s + b                          the balancing bias b (E,), for *choosing* only
    groups: view choice as (N, n_groups, E / n_groups); a group's score is its best
            expert (or, with a bias, the sum of its top-2); keep the topk_groups best
            groups, the other experts get -inf
    indices = topK(choice)                  K experts per token
    g_i = s_i                               weights from the UNBIASED scores
    g_i = s_i / sum_{j in topK} s_j         ... normalised, for sigmoid scores
    weights = g * route_scale

Why the bias never weights: it exists to steer load, and if it scaled the output,
balancing would change what the model computes; V3 keeps the two apart.

Write `route` below; it keeps the name and signature of toyds.moe.gate.route (which
Gate.route calls), so your version drops into the library unchanged.

    toyds check gate

Notebook: notebooks/01_moe.ipynb. About 25 minutes.
"""

from __future__ import annotations

import torch

from toyds.moe.config import MoEConfig


def route(scores: torch.Tensor, cfg: MoEConfig, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3's routing of affinity scores (N, E) -> (weights (N, K), indices (N, K)).

    bias (E,), if given, is added to the scores for *choosing* experts only: the
    weights are the chosen experts' unbiased scores. With cfg.n_groups > 1 only the
    cfg.topk_groups best groups are eligible. cfg fields used: n_groups, topk_groups,
    top_k, score_func ("softmax" or "sigmoid"), route_scale.
    """
    # TODO 1. choice = scores + bias (or the scores alone when bias is None)
    # TODO 2. if cfg.n_groups > 1: score the groups, keep the best cfg.topk_groups, others -inf
    # TODO 3. indices = the top cfg.top_k of choice;  weights = the UNBIASED scores at those indices
    # TODO 4. sigmoid: normalise the weights over the K;  then multiply by cfg.route_scale
    raise NotImplementedError("write route: see the TODOs above")
