"""Solution to the `all_to_all_counts` exercise: toyds.parallel.expert_parallel's own code, unchanged (send_counts).

    toyds check all_to_all_counts --file workshop/solutions/all_to_all_counts.py
"""

from __future__ import annotations

import torch

from toyds.parallel.expert_parallel import local_experts


def send_counts(experts: torch.Tensor, n_experts: int, world_size: int) -> tuple[torch.Tensor, list[int]]:
    """What one rank tells the others before it sends its token copies.

    experts: the expert id of each token copy on this rank (any shape, e.g. (A,) or
    (N, K)). Returns per_expert (E,), the copies bound for each expert, and send, a
    list of W ints: the rows bound for each rank, which holds experts
    r*E/W .. (r+1)*E/W - 1 (local_experts). A pure function, so the layer and the
    workshop's `all_to_all_counts` exercise (toyds check all_to_all_counts) share it.
    """
    local_experts(n_experts, world_size, 0)  # raises unless W divides E
    # per_expert_i = #{copies routed to expert i}
    per_expert = torch.bincount(experts.flatten(), minlength=n_experts)  # (E,)
    # send_r = sum of per_expert_i over rank r's experts
    send = per_expert.view(world_size, n_experts // world_size).sum(1).tolist()  # (W,)
    return per_expert, send
