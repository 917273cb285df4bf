r"""Expert parallelism: an MoE layer's routed experts spread over the ranks.

Expert parallelism is how DeepSeek-V3 holds 256 routed experts per layer (report, section 3.2: 64-way EP over 8 nodes): each rank
holds E/W experts, and after the gate every token copy travels to the rank that
holds its expert and back, in all-to-all exchanges. For W = 2, E = 4:

  rank 0: x0 (N0, D), experts 0 1            rank 1: x1 (N1, D), experts 2 3
  gate; sort the A0 = N0*K copies by expert  gate; sort the A1 = N1*K copies
  1. sizes: copies per expert (E,) --all_to_all--> (W, E/W) per source rank, per local expert
  2. rows:  [ to r0  | to r1  ] (A0, D)      [ to r0  | to r1  ] (A1, D)
                |         \                       /         |
                |          '---------. .---------'          |
                |                     X   all_to_all_single |
                |          .---------' '---------.          |
                v         v                       v         v
     recv:  [ from r0 | from r1 ] (R0, D)    [ from r0 | from r1 ] (R1, D)
  regroup by local expert, run experts 0 1   regroup, run experts 2 3: (R, D) -> (R, D)
  3. back:  the reverse exchange, (R0, D) -> (A0, D) in the order the copies left
  y0 = shared(x0) + index_add of g * rows    y1 (N1, D)

    y_n = shared(x_n) + sum_{i in topK(n)} g_i FFN_i(x_n),  FFN_i on rank i // (E/W)

Backward runs each exchange in reverse (AllToAll). The routing counts are
all-reduced and handed to the same balancing code a one-process MoE uses
(toyds/moe/balance.py), so the bias rule moves every rank's gate alike and each rank's
auxiliary loss is its share of the whole batch's. What V3 adds at scale, left out here:
node-limited routing (a token reaches at most 4 nodes, bounding InfiniBand traffic,
2.1.2); DualPipe, overlapping one micro-batch's all-to-all with another's compute
(3.2.1); kernels that send over InfiniBand then NVLink (3.2.2); FP8 dispatch
(3.3); redundant copies of busy experts at inference (3.4). Here each exchange blocks,
ranks share one machine, and EP and DDP run apart. Shown in examples/06_distributed.py.
(The opener is longer than the house 25 lines: the picture is the point.)

Shapes: N tokens on this rank, D width, E routed experts, K top-k, W world size,
A = N*K copies sent, R rows received.
"""


from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from toyds.moe import balance
from toyds.moe.dispatch import resolve_dispatch, run_blocks, run_grouped
from toyds.moe.layer import MoE
from toyds.parallel.distributed import _comm_device, get_rank, get_world_size

# ---------------------------------------------------------- the exchange


@dataclass
class ExchangeStats:
    """What an expert-parallel layer's exchanges did. Reset it to start a measurement."""

    sent: list[int] = field(default_factory=list)  # token rows sent to each rank, last forward (W,)
    received: list[int] = field(default_factory=list)  # token rows received from each rank, last forward (W,)
    seconds: float = 0.0  # wall time inside all_to_all_single, forward and backward, since reset
    calls: int = 0  # all_to_all_single calls since reset

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def _exchange(x: torch.Tensor, send: list[int], recv: list[int], group, stats) -> torch.Tensor:
    """all_to_all_single: send[r] rows of x go to rank r; recv[r] rows arrive from rank r."""
    out = x.new_empty((sum(recv), *x.shape[1:]))  # (sum(recv), ...)
    t0 = time.perf_counter()
    if dist.is_initialized():
        dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv, input_split_sizes=send, group=group)
    else:  # one process: every row is for me
        out.copy_(x)
    if stats is not None:  # includes waiting for the slowest rank; on GPUs, time with CUDA events
        stats.seconds += time.perf_counter() - t0
        stats.calls += 1
    return out


class AllToAll(torch.autograd.Function):
    """all_to_all_single with a gradient.

    Forward: send[r] rows go to rank r, recv[r] rows come from rank r. Row j of the
    output is a row some rank sent, so its gradient belongs to that rank: backward
    is the same exchange with send and recv swapped. Every rank must run backward
    through every exchange it ran forward, or the others wait for ever.
    """

    @staticmethod
    def forward(ctx, x, send: list[int], recv: list[int], group=None, stats=None):
        ctx.send, ctx.recv, ctx.group, ctx.stats = send, recv, group, stats
        return _exchange(x, send, recv, group, stats)

    @staticmethod
    def backward(ctx, grad):
        return _exchange(grad, ctx.recv, ctx.send, ctx.group, ctx.stats), None, None, None, None


def all_to_all(x: torch.Tensor, send: list[int], recv: list[int], group=None, stats=None) -> torch.Tensor:
    """(sum(send), ...) -> (sum(recv), ...), differentiable (see AllToAll)."""
    return AllToAll.apply(x, send, recv, group, stats)


# ------------------------------------------------------ expert parallelism


def local_experts(n_experts: int, world_size: int, rank: int) -> range:
    """The routed experts rank `rank` holds: E/W consecutive ones."""
    if n_experts % world_size:
        raise ValueError(
            f"cannot split n_experts={n_experts} routed experts over world size {world_size}: every rank must "
            f"hold the same number, so n_experts must be a multiple of {world_size}"
        )
    per_rank = n_experts // world_size
    return range(rank * per_rank, (rank + 1) * per_rank)


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


class ExpertParallelMoE(MoE):
    """A MoE with its routed experts spread over the ranks; gate and shared experts replicated.

    Built from a full MoE that is the same on every rank (e.g. from one seed): this
    rank keeps copies of the gate, the shared experts and its E/W routed experts, so
    the layer can be compared number for number with the single-process one. The
    forward is MoE's; only the routed part (and its statistics) differ.

    Gradient bookkeeping, if the global loss is the sum of the ranks' losses: a
    local expert's .grad already holds every rank's contribution (the exchange
    carried it back); gate and shared-expert grads hold this rank's tokens only, so
    sum them over ranks (all_reduce_grads(layer.replicated_parameters())).
    Statistics: load and dropped are global (summed over ranks); indices are this
    rank's tokens; balance_loss is this rank's share (the ranks' shares sum to the
    loss of the whole batch). Capacity, if set, is applied per rank to its own N tokens
    (GShard's local groups), so it matches MoE run on this rank's shard.
    """

    counts_are_global = True  # balance.after_step need not sum the load over ranks again

    def __init__(self, moe: MoE, group=None):
        # MoE.__init__ would build and initialise all E experts; I copy what this rank
        # needs from `moe` and set the attributes MoE's methods read.
        nn.Module.__init__(self)
        cfg = moe.cfg
        self.cfg, self.group = cfg, group
        self.rank, self.world_size = get_rank(group), get_world_size(group)
        self.expert_ids = local_experts(cfg.n_experts, self.world_size, self.rank)
        self.gate = copy.deepcopy(moe.gate)
        self.experts = nn.ModuleList(copy.deepcopy(moe.experts[i]) for i in self.expert_ids)  # E/W of them
        self.shared_experts = copy.deepcopy(moe.shared_experts)
        self.rules = balance.parse(cfg.balance, cfg.balance_params)
        self.reset_stats()  # load, dropped and balance_loss will be global; indices this rank's
        self.stats = ExchangeStats()

    def replicated_parameters(self) -> list[nn.Parameter]:
        """Gate and shared experts: the same on every rank, so their grads need an all-reduce."""
        shared = list(self.shared_experts.parameters()) if self.shared_experts is not None else []
        return list(self.gate.parameters()) + shared

    def routed(self, x, weights, indices, keep=None) -> torch.Tensor:
        """sum_k weights[:, k] * expert_{indices[:, k]}(x), the experts living on their ranks."""
        N, K = indices.shape
        E, W = self.cfg.n_experts, self.world_size
        E_local = E // W
        # 1. sort the A = N*K copies by expert: rank r's experts r*E/W.. are contiguous,
        #    so this also sorts them by destination rank
        token = torch.arange(N, device=x.device).repeat_interleave(K)  # (A,) token of each copy
        expert, weight = indices.flatten(), weights.flatten()  # (A,), (A,)
        if keep is not None:
            token, expert, weight = token[keep.flatten()], expert[keep.flatten()], weight[keep.flatten()]
        order = expert.argsort(stable=True)
        token, expert, weight = token[order], expert[order], weight[order]
        # 2. sizes first: copies per expert (E,) out; in: (W, E/W) copies from each rank per local expert
        per_expert, send = send_counts(expert, E, W)  # (E,), (W,) rows to each rank
        got = _exchange(per_expert, [E_local] * W, [E_local] * W, self.group, self.stats)
        got = got.view(W, E_local)  # (W, E/W)
        recv = got.sum(1).tolist()  # (W,) rows from each rank
        self.stats.sent, self.stats.received = send, recv
        # 3. the token rows: (A, D) out, (R, D) in, rank 0's rows first
        xs = all_to_all(x[token], send, recv, self.group, self.stats)  # (R, D)
        # 4. each rank's chunk is sorted by local expert; regroup all R rows by local expert
        local = torch.arange(E_local, device=x.device).repeat(W).repeat_interleave(got.flatten())  # (R,)
        regroup = local.argsort(stable=True)
        inverse = torch.empty_like(regroup)
        inverse[regroup] = torch.arange(len(regroup), device=x.device)
        run = run_grouped if self._grouped(x) else run_blocks
        ys = run(xs[regroup], got.sum(0), self.experts)[inverse]  # (R, D), in received order
        # 5. the outputs go back the way they came: (R, D) out, (A, D) in, in sent order
        back = all_to_all(ys, recv, send, self.group, self.stats)  # (A, D)
        # y_n = sum over n's copies of g * FFN_i(x_n)
        return torch.zeros_like(x).index_add_(0, token, back * weight[:, None])

    def _grouped(self, x) -> bool:
        return resolve_dispatch(self.cfg, x) == "grouped_mm"  # received rows arrive sorted: blocks or one kernel

    def _global(self, counts: torch.Tensor) -> torch.Tensor:
        """Routing counts summed over ranks: MoE._record then runs the same balancing code."""
        if not dist.is_initialized():
            return counts
        counts = counts.to(_comm_device(self.group))
        dist.all_reduce(counts, group=self.group)
        return counts

    def params_active(self) -> int:
        """Gate + shared experts + the K routed experts one token uses (wherever they live)."""
        per_expert = sum(p.numel() for p in self.experts[0].parameters())
        return sum(p.numel() for p in self.replicated_parameters()) + self.cfg.top_k * per_expert


def expert_parallel(model: nn.Module, group=None) -> nn.Module:
    """Swap every MoE feed-forward of a GPT for its expert-parallel twin, in place."""
    for block in model.blocks:
        if isinstance(block.ffn, MoE) and not isinstance(block.ffn, ExpertParallelMoE):
            block.ffn = ExpertParallelMoE(block.ffn, group)
    return model
