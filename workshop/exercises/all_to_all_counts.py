"""Exercise `all_to_all_counts`: what a rank says before expert parallelism sends its tokens.

With expert parallelism (DeepSeek-V3 report, section 3.2) each of W ranks holds E/W
of the routed experts: rank r holds experts r*E/W .. (r+1)*E/W - 1. After the gate,
each of this rank's token copies (one per chosen expert: N tokens x top-K) must
travel to the rank that holds its expert, through all_to_all_single. Before the rows
go, the ranks exchange sizes, so each knows how many rows it will receive:

    per_expert_i = #{copies routed to expert i}                (E,)
    send_r       = sum_{i held by rank r} per_expert_i          (W,) rows to each rank

For W = 2, E = 4 and copies routed to experts [[0, 3], [1, 3], [3, 2]]:
per_expert = [1, 1, 1, 3] and send = [2, 4].

Write `send_counts` below; it keeps the name and signature of
toyds.parallel.expert_parallel.send_counts (which ExpertParallelMoE.routed calls), so your
version drops into the library unchanged.

    toyds check all_to_all_counts

Notebook: notebooks/06_scaling_out.ipynb. About 15 minutes.
"""

from __future__ import annotations

import torch

from toyds.parallel.expert_parallel import local_experts# noqa: F401  local_experts(E, W, rank) -> range; raises unless W divides E


def send_counts(experts: torch.Tensor, n_experts: int, world_size: int) -> tuple[torch.Tensor, list[int]]:
    """What one rank tells the others before it sends its token copies.

    experts: the expert id of each token copy on this rank (any shape, e.g. (A,) or
    (N, K)). Returns per_expert (E,), the copies bound for each expert, and send, a
    list of W Python ints: the rows bound for each rank. Raises a ValueError unless
    world_size divides n_experts.
    """
    # TODO 1. check that world_size divides n_experts (local_experts does, and says so)
    # TODO 2. per_expert_i = copies routed to expert i, for every i in 0..E-1
    # TODO 3. send_r = sum of per_expert over rank r's experts, as a list of ints
    raise NotImplementedError("write send_counts: see the TODOs above")
