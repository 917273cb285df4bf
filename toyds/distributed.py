r"""Scaling out: data parallelism and expert parallelism on torch.distributed.

Under `torchrun --nproc_per_node W` a script runs as W processes (ranks) that talk
through torch.distributed: gloo on CPU, NCCL on GPUs, the same code. Data
parallelism (DDP) copies the model to every rank, gives each rank its rows of every
global batch and averages gradients in backward, so W ranks take the step one
process takes on the whole batch. Expert parallelism is how DeepSeek-V3 holds 256
routed experts per layer (report, section 3.2: 64-way EP over 8 nodes): each rank
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

Backward runs each exchange in reverse (AllToAll). The load is all-reduced, so the
bias rule moves every rank's gate alike. What V3 adds at scale, left out here:
node-limited routing (a token reaches at most 4 nodes, bounding InfiniBand traffic,
2.1.2); DualPipe, overlapping one micro-batch's all-to-all with another's compute
(3.2.1); kernels that send over InfiniBand then NVLink (3.2.2); FP8 dispatch
(3.3); redundant copies of busy experts at inference (3.4). Here each exchange blocks,
ranks share one machine, and EP and DDP run apart. Shown in examples/06_distributed.py.
(The opener is longer than the house 25 lines: the picture is the point.)

Shapes: N tokens on this rank, D width, E routed experts, K top-k, W world size,
A = N*K copies sent, R rows received, B batch rows.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from toyds.moe import MoE, grouped_mm_available, run_blocks, run_grouped
from toyds.runs import seed_everything

# ------------------------------------------------------------ process group


def init(device: str | torch.device = "cpu") -> tuple[int, int]:
    """Join the process group torchrun describes in the environment: (rank, world size).

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Without
    them this is one process: nothing is initialised and (0, 1) comes back, so the
    same script runs with plain `python`. The backend follows the device: gloo for
    CPU tensors, NCCL for CUDA ones (each rank then takes GPU LOCAL_RANK).
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"torch.distributed here runs on 'cpu' (gloo) or 'cuda' (nccl), not {kind!r}")
    if kind == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def get_rank(group=None) -> int:
    return dist.get_rank(group) if dist.is_initialized() else 0


def get_world_size(group=None) -> int:
    return dist.get_world_size(group) if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one rank that prints and saves."""
    return get_rank() == 0


def teardown() -> None:
    """Wait for every rank, then leave the process group; a no-op in one process.

    The barrier stops rank 0 (which hosts the rendezvous store) from leaving while
    another rank still has a collective in flight.
    """
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _comm_device(group=None) -> torch.device:
    """Where tensors must live for a collective: NCCL only moves CUDA tensors."""
    if dist.is_initialized() and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(metrics: dict[str, float], group=None) -> dict[str, float]:
    """The mean over ranks of each scalar, e.g. {"loss": 0.8} -> {"loss": mean of the W losses}.

    Every rank must call it with the same keys (a collective: one that skips it hangs
    the others). In one process it returns a copy.
    """
    W = get_world_size(group)
    if W == 1:
        return {k: float(v) for k, v in metrics.items()}
    keys = sorted(metrics)  # the same order on every rank
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_comm_device(group))
    dist.all_reduce(t, group=group)  # sum over ranks
    return {k: v / W for k, v in zip(keys, t.tolist())}


def all_reduce_grads(params, average: bool = False, group=None) -> None:
    """Sum (or average) the .grad of replicated parameters over ranks, as DDP does in backward."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)
            if average:
                p.grad /= get_world_size(group)


def rank_seed(seed: int, rank: int | None = None) -> int:
    """A different seed per rank, the same on every run: seed + 10_000 * rank."""
    return seed + 10_000 * (get_rank() if rank is None else rank)


def seed_rank(seed: int) -> int:
    """Seed python, numpy and torch with this rank's seed (for sampling that should differ per rank)."""
    s = rank_seed(seed)
    seed_everything(s)
    return s


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
    rank's tokens; aux_loss is this rank's share (the ranks' shares sum to the loss
    of the whole batch). Capacity, if set, is applied per rank to its own N tokens
    (GShard's local groups), so it matches MoE run on this rank's shard.
    """

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
        self.load = torch.zeros(cfg.n_experts)  # (E,) assignments each expert ran, all ranks, last forward
        self.indices: torch.Tensor | None = None  # (N, K) experts chosen for this rank's tokens
        self.dropped = 0  # assignments dropped by capacity, all ranks, last forward
        self.aux_loss: torch.Tensor | None = None  # this rank's share of the auxiliary loss
        self._pending_load = torch.zeros(cfg.n_experts)  # global load since the last bias update
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
        per_expert = torch.bincount(expert, minlength=E)  # (E,)
        got = _exchange(per_expert, [E_local] * W, [E_local] * W, self.group, self.stats)
        got = got.view(W, E_local)  # (W, E/W)
        send = per_expert.view(W, E_local).sum(1).tolist()  # (W,) rows to each rank
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
        wanted = self.cfg.dispatch == "grouped_mm" or (self.cfg.dispatch == "auto" and x.is_cuda)  # as MoE.routed
        return wanted and grouped_mm_available(x, self.cfg)

    def _record(self, scores, indices, keep):
        E, N = self.cfg.n_experts, len(scores)
        kept = indices if keep is None else indices[keep]
        counts = torch.cat([
            torch.bincount(kept.flatten(), minlength=E),  # (E,) copies the experts ran
            torch.bincount(indices.flatten(), minlength=E),  # (E,) copies chosen, before capacity
            torch.tensor([N], device=indices.device),  # tokens
        ]).to(torch.float64)  # (2E + 1,)
        if dist.is_initialized():  # the global figures: every rank then runs the same bias rule
            counts = counts.to(_comm_device(self.group))
            dist.all_reduce(counts, group=self.group)
        counts = counts.cpu()
        self.load, self.indices = counts[:E].float(), indices.detach()
        self.dropped = int(counts[E : 2 * E].sum() - counts[:E].sum())
        self.aux_loss = None
        if self.training:
            self._pending_load += self.load
            if self.cfg.balance == "aux_loss":
                self.aux_loss = self._aux_share(scores, counts[E : 2 * E], int(counts[-1]))

    def _aux_share(self, scores, chosen: torch.Tensor, n_global: int) -> torch.Tensor:
        """This rank's share of alpha * E * sum_i f_i * P_i over the whole batch
        (see MoE.balance_loss): f from the global counts, P summed over my tokens only."""
        E, K = self.cfg.n_experts, self.cfg.top_k
        probs = scores / scores.sum(-1, keepdim=True)  # (N, E), my tokens
        f = (chosen / (n_global * K)).to(scores)  # (E,) share of all copies, a count: no gradient
        P_share = probs.sum(0) / n_global  # (E,) my tokens' part of the mean probability
        # L_aux = alpha * E * sum_i f_i * P_i, and P_i = sum over ranks of P_share_i
        return self.cfg.aux_loss_alpha * E * (f * P_share).sum()

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


# -------------------------------------------------------- data parallelism


class DataParallel:
    """The pieces a trainer needs to run data-parallel under torchrun.

    train_supervised(model, pairs, cfg, parallel=DataParallel()) uses all of them; a
    GRPO trainer can too: `wrap` for the model it backpropagates through (generate
    with the unwrapped model), `seed` so ranks sample different completions, or
    `shard` for rows of a batch every rank built, `reduce` for logged numbers,
    `is_main` for progress bars and checkpoints. Every rank makes the same calls.
    """

    def __init__(self, group=None):
        if not dist.is_initialized():
            raise RuntimeError("DataParallel needs a process group: run under torchrun and call "
                               "toyds.distributed.init() first")
        self.group = group
        self.rank, self.world_size = get_rank(group), get_world_size(group)
        self.is_main = self.rank == 0

    def wrap(self, model: nn.Module) -> nn.parallel.DistributedDataParallel:
        """DDP around model: copies rank 0's weights to all, averages gradients in backward.

        Call the wrapper for forward passes that backpropagate; read model.cfg,
        model.aux_loss() etc. on the model itself (or wrapper.module). DDP also copies
        rank 0's buffers (the gate bias) to the others before each forward; with
        sync_moe_load after each step they are equal already.
        """
        layers = model.moe_layers() if hasattr(model, "moe_layers") else []
        if any(isinstance(m, ExpertParallelMoE) for m in layers):
            raise ValueError("a model with ExpertParallelMoE layers cannot go inside DDP here: DDP would average "
                             "different experts' gradients; this toy runs EP and DP apart")
        device = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # "loop" dispatch skips experts that got no tokens: their weights sit out a step
            find_unused_parameters=any(m.cfg.dispatch == "loop" for m in layers),
            process_group=self.group,
        )

    def seed(self, seed: int) -> int:
        return seed_rank(seed)

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of each (B, ...) tensor: B split into W near-equal consecutive chunks."""
        B = len(tensors[0])
        if B < self.world_size:
            raise ValueError(f"a batch of {B} rows cannot give each of {self.world_size} ranks a row; "
                             f"use batch_size >= {self.world_size}")
        return tuple(t.tensor_split(self.world_size)[self.rank] for t in tensors)

    def shard_batch(self, x, y, m):
        """This rank's rows of a global batch, and the weight w of its masked loss.

        The global loss is sum(nll * m) / n over all n target tokens; rank r averages
        over its n_r, and DDP averages the W ranks, so w_r = W * n_r / n makes
        mean_r(w_r * loss_r) the global loss exactly, even when n_r differ.
        """
        n = m.sum()
        x, y, m = self.shard(x, y, m)  # (B/W, T) each
        # w_r = W * n_r / n
        weight = (self.world_size * m.sum() / n.clamp(min=1)).item()
        return x, y, m, weight

    def reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        return all_reduce_mean(metrics, self.group)

    def sync_moe_load(self, model: nn.Module) -> None:
        """Sum the load each replicated MoE layer saw since its last bias update over ranks,
        so update_moe_biases() moves every rank's gate bias the same way."""
        for m in model.moe_layers() if hasattr(model, "moe_layers") else []:
            if not isinstance(m, ExpertParallelMoE):  # those count globally already
                load = m._pending_load.to(_comm_device(self.group))
                dist.all_reduce(load, group=self.group)
                m._pending_load = load.cpu()
