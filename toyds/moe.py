"""Mixture of experts: a router sends each token to a few experts, the rest stay off.

A DeepSeekMoE layer (DeepSeek-V3 report, section 2.1.2) replaces one big
feed-forward with many narrow ones. Shared experts see every token; a Gate picks
K of the E routed experts for each token, and only those run:

    h = sum_{s shared} FFN_s(x) + sum_{i in topK} g_i * FFN_i(x)

So the layer *holds* E + S experts' parameters but *uses* K + S per token: more
knowledge at the same compute. The Gate scores experts with softmax (DeepSeek-V2)
or sigmoid (V3) of x W^T; with groups (V3's node-limited routing in miniature),
only the `topk_groups` best groups of experts are eligible. Balancing keeps every
expert busy; its rules (the Switch/GShard auxiliary loss, V3's sequence-wise loss,
V3's bias that is added to the scores for *choosing* experts only, and any
combination) live in toyds/balance.py.

How the toy differs: experts are tens of units wide, not 2048; one process
(toyds/expert_parallel.py spreads experts over ranks); V3's 8-node limit is left
out; optional Switch-style capacity with token dropping is offered for comparison
(V3 drops no tokens).

Dispatch (running each token through its K experts) lives in toyds/dispatch.py:
a loop over experts as V3's inference code does, sorted blocks, or one grouped
kernel; tests/test_moe.py checks each against a plain loop over tokens. On a CPU
the default is the loop: it measured fastest of the three (1.25x a dense layer at
4,096 tokens, against 1.31x sorted; toyds/dispatch.py has the figures).

Shapes: N tokens (B*T flattened), D model width, E routed experts, K top-k,
H expert width, A = N*K token-expert assignments. Shown in examples/01_moe.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from toyds import balance
from toyds.dispatch import dispatch_loop, dispatch_sorted, resolve_dispatch
from toyds.layers import SwiGLU

SCORE_FUNCS = ("softmax", "sigmoid")
DISPATCH = ("auto", "loop", "sorted", "grouped_mm")


@dataclass
class MoEConfig:
    dim: int = 128  # model width D
    n_experts: int = 8  # routed experts E
    top_k: int = 2  # routed experts per token K
    n_shared_experts: int = 1  # experts every token passes through (0 = none)
    expert_dim: int = 128  # hidden width H of each expert's SwiGLU
    score_func: str = "softmax"  # "softmax" (DeepSeek-V2) or "sigmoid" (V3) affinity scores
    n_groups: int = 1  # experts split into this many groups (1 = no group limit)
    topk_groups: int = 1  # only the best this-many groups are eligible per token
    route_scale: float = 1.0  # the gate weights are multiplied by this
    balance: str = "bias"  # rules from toyds/balance.py joined by "+": none, aux_loss, seq_aux, bias, "bias+seq_aux"
    aux_loss_alpha: float = 0.01  # weight alpha of the batch-wise auxiliary loss (aux_loss)
    seq_aux_alpha: float = 0.0001  # weight alpha of V3's sequence-wise auxiliary loss (seq_aux; V3 used 0.0001)
    bias_update_speed: float = 0.001  # gamma of the bias rule b_i += gamma * sign(...)
    capacity_factor: float | None = None  # None: keep every token; else drop past cf * N * K / E per expert
    dispatch: str = "auto"  # "loop", "sorted", "grouped_mm", or "auto" (grouped_mm on CUDA, loop on a CPU)

    def __post_init__(self):
        for name in ("dim", "n_experts", "top_k", "expert_dim", "n_groups", "topk_groups"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"MoEConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.n_shared_experts, int) and self.n_shared_experts >= 0):
            raise ValueError(f"MoEConfig.n_shared_experts must be an integer >= 0, got {self.n_shared_experts!r}")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k={self.top_k} cannot exceed n_experts={self.n_experts}")
        if self.n_experts % self.n_groups:
            raise ValueError(f"n_groups={self.n_groups} must divide n_experts={self.n_experts}")
        if self.topk_groups > self.n_groups:
            raise ValueError(f"topk_groups={self.topk_groups} cannot exceed n_groups={self.n_groups}")
        per_group = self.n_experts // self.n_groups
        if self.top_k > self.topk_groups * per_group:
            raise ValueError(
                f"top_k={self.top_k} needs more experts than the {self.topk_groups} eligible groups of "
                f"{per_group} hold; raise topk_groups or lower top_k"
            )
        if self.n_groups > 1 and balance.uses_bias(self.balance) and per_group < 2:
            raise ValueError(f"with balance='bias' a group's score sums its top-2 experts; groups of {per_group} are too small")
        if self.score_func not in SCORE_FUNCS:
            raise ValueError(f"score_func must be one of {SCORE_FUNCS}, got {self.score_func!r}")
        balance.parse(self.balance)  # raises for an unknown rule, naming the valid ones
        if self.dispatch not in DISPATCH:
            raise ValueError(f"dispatch must be one of {DISPATCH}, got {self.dispatch!r}")
        if not (math.isfinite(self.route_scale) and self.route_scale > 0):
            raise ValueError(f"route_scale must be a finite number > 0, got {self.route_scale!r}")
        for name in ("aux_loss_alpha", "seq_aux_alpha", "bias_update_speed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"MoEConfig.{name} must be a finite number >= 0, got {v!r}")
        if self.capacity_factor is not None and not (math.isfinite(self.capacity_factor) and self.capacity_factor > 0):
            raise ValueError(f"capacity_factor must be None or a finite number > 0, got {self.capacity_factor!r}")


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
    cfg.topk_groups best groups are eligible. A pure function, so Gate.route and
    the workshop's `gate` exercise (toyds check gate) share it.
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


class MoE(nn.Module):
    """The DeepSeekMoE feed-forward: shared experts plus K of E routed experts."""

    counts_are_global = False  # the expert-parallel layer sums its counts over ranks

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(SwiGLU(cfg.dim, cfg.expert_dim) for _ in range(cfg.n_experts))
        # S shared experts of width H are one SwiGLU of width S*H (their hidden units side by side)
        self.shared_experts = SwiGLU(cfg.dim, cfg.n_shared_experts * cfg.expert_dim) if cfg.n_shared_experts else None
        self.rules = balance.parse(cfg.balance)
        self.reset_stats()

    def reset_stats(self) -> None:
        """Routing statistics, refreshed by every forward (read them, don't train on them)."""
        E = self.cfg.n_experts
        self.load = torch.zeros(E)  # (E,) token assignments each expert ran, last forward
        self.indices: torch.Tensor | None = None  # (n, K) experts chosen for this rank's routed tokens, last forward
        self.dropped = 0  # assignments dropped by the capacity limit, last forward
        self.balance_loss: torch.Tensor | None = None  # the balancing rules' loss, last training forward
        self.pending_load = torch.zeros(E)  # (E,) load of training forwards since the last optimiser step
        self.step_load = torch.zeros(E)  # (E,) load of the last optimiser step's training tokens

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None, seq: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., D) -> (..., D).

        real (N,) bool, optional: False for padding positions, which are neither
        routed nor counted in the load (a batch of short sequences is mostly padding,
        and the bias rule would otherwise balance the padding). seq (N,) long,
        optional: the sequence each position belongs to, for the sequence-wise
        balancing loss; by default every row of a (B, T, D) input is one sequence.
        """
        shape = x.shape
        x = x.reshape(-1, self.cfg.dim)  # (N, D)
        if seq is None:  # (N,) row b of a (B, T, D) input is sequence b
            seq = torch.arange(len(x) // shape[-2] if len(shape) > 2 else 1, device=x.device)
            seq = seq.repeat_interleave(shape[-2] if len(shape) > 2 else len(x))
        y = self.shared_experts(x) if self.shared_experts is not None else torch.zeros_like(x)
        xr, seq = (x, seq) if real is None else (x[real], seq[real])  # (n, D) the tokens that are routed
        scores = self.gate.scores(xr)  # (n, E)
        weights, indices = self.gate.route(scores)  # (n, K), (n, K)
        keep = self.capacity_mask(indices) if (self.training and self.cfg.capacity_factor) else None
        routed = self.routed(xr, weights, indices, keep)  # (n, D)
        y = y + routed if real is None else y.index_add(0, real.nonzero()[:, 0], routed)
        self._record(scores, indices, keep, seq)
        return y.view(shape)

    def routed(self, x, weights, indices, keep=None) -> torch.Tensor:
        """sum_k weights[:, k] * expert_{indices[:, k]}(x), by the configured dispatch."""
        how = resolve_dispatch(self.cfg, x)
        if how == "loop":
            return dispatch_loop(x, weights, indices, self.experts, keep)
        return dispatch_sorted(x, weights, indices, self.experts, keep, grouped_mm=how == "grouped_mm")

    def capacity_mask(self, indices: torch.Tensor) -> torch.Tensor:
        """(N, K) bool: False for assignments past an expert's capacity C = ceil(cf * N * K / E).

        Tokens claim places in order (Switch Transformer); a dropped assignment adds
        nothing, and the token still flows on through the residual connection.
        """
        N, K = indices.shape
        capacity = math.ceil(self.cfg.capacity_factor * N * K / self.cfg.n_experts)
        flat = indices.flatten()  # (A,)
        order = flat.argsort(stable=True)  # assignments grouped by expert, in token order
        counts = torch.bincount(flat, minlength=self.cfg.n_experts)  # (E,)
        starts = counts.cumsum(0) - counts  # (E,) first slot of each expert's block
        rank = torch.empty_like(flat)
        rank[order] = torch.arange(len(flat), device=flat.device) - starts[flat[order]]  # place in its expert's queue
        return (rank < capacity).view(N, K)

    # ------------------------------------------------------------- balancing
    def _global(self, counts: torch.Tensor) -> torch.Tensor:
        """Counts summed over ranks: in one process they are already global."""
        return counts

    def _record(self, scores, indices, keep, seq):
        """Keep the routing statistics and, in training, the balancing rules' loss (toyds/balance.py)."""
        E = self.cfg.n_experts
        kept = indices if keep is None else indices[keep]
        seq = torch.unique(seq, return_inverse=True)[1] if len(seq) else seq  # (n,) numbered 0..S-1
        counts = torch.cat([
            torch.bincount(kept.flatten(), minlength=E),  # (E,) copies the experts ran
            torch.bincount(indices.flatten(), minlength=E),  # (E,) copies chosen, before capacity
            torch.tensor([len(indices), int(seq.max()) + 1 if len(seq) else 0], device=indices.device),  # tokens, seqs
        ]).to(torch.float64)  # (2E + 2,)
        counts = self._global(counts).cpu()
        self.load, self.indices = counts[:E].float(), indices.detach()
        self.dropped = int(counts[E : 2 * E].sum() - counts[:E].sum())
        self.balance_loss = None
        if self.training:
            self.pending_load = self.pending_load + self.load
            routing = balance.Routing(scores, indices, seq, counts[E : 2 * E], int(counts[-2]), int(counts[-1]))
            self.balance_loss = balance.layer_loss(self.rules, routing, self.cfg)

    # ------------------------------------------------------------ parameters
    def params_total(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def params_active(self) -> int:
        """Gate + shared experts + the K routed experts one token uses."""
        per_expert = sum(p.numel() for p in self.experts[0].parameters())
        return self.params_total() - (self.cfg.n_experts - self.cfg.top_k) * per_expert
