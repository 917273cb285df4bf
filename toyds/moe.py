"""Mixture of experts: a router sends each token to a few experts, the rest stay off.

A DeepSeekMoE layer (DeepSeek-V3 report, section 2.1.2) replaces one big
feed-forward with many narrow ones. Shared experts see every token; a Gate picks
K of the E routed experts for each token, and only those run:

    h = sum_{s shared} FFN_s(x) + sum_{i in topK} g_i * FFN_i(x)

So the layer *holds* E + S experts' parameters but *uses* K + S per token: more
knowledge at the same compute. The Gate scores experts with softmax (DeepSeek-V2)
or sigmoid (V3) of x W^T; with groups (V3's node-limited routing in miniature),
only the `topk_groups` best groups of experts are eligible. Balancing keeps every
expert busy: the Switch/GShard auxiliary loss, or V3's auxiliary-loss-free bias
that is added to the scores for *choosing* experts only, and nudged after each
optimiser step, b_i += gamma * sign(mean_load - load_i) (section 2.1.2).

How the toy differs: experts are tens of units wide, not 2048; one process
(toyds/distributed.py spreads experts over ranks); V3's small sequence-wise
auxiliary loss and its 8-node limit are left out; optional Switch-style capacity
with token dropping is offered for comparison (V3 drops no tokens).

Dispatch, three ways that compute the same thing (tests/test_moe.py checks them
against a plain loop over tokens, forward and backward):
    "loop"        for each expert, find its tokens (V3's own inference code)
    "sorted"      sort token copies by expert, one matmul per contiguous block
    "grouped_mm"  the sorted layout through torch._grouped_mm: one kernel for all
                  experts (private PyTorch API; "sorted" is used where it is
                  missing or cannot take the widths or dtype). "auto" takes it on
                  CUDA only: on a CPU it measured slower than "sorted".

Shapes: N tokens (B*T flattened), D model width, E routed experts, K top-k,
H expert width, A = N*K token-expert assignments. Shown in examples/01_moe.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from toyds.layers import SwiGLU

BALANCE = ("none", "aux_loss", "bias")
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
    balance: str = "bias"  # "none", "aux_loss" (Switch/GShard) or "bias" (V3, loss-free)
    aux_loss_alpha: float = 0.01  # weight alpha of the auxiliary loss
    bias_update_speed: float = 0.001  # gamma of the bias rule b_i += gamma * sign(...)
    capacity_factor: float | None = None  # None: keep every token; else drop past cf * N * K / E per expert
    dispatch: str = "auto"  # "loop", "sorted", "grouped_mm", or "auto" (grouped_mm on CUDA, else sorted)

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
        if self.n_groups > 1 and self.balance == "bias" and per_group < 2:
            raise ValueError(f"with balance='bias' a group's score sums its top-2 experts; groups of {per_group} are too small")
        if self.score_func not in SCORE_FUNCS:
            raise ValueError(f"score_func must be one of {SCORE_FUNCS}, got {self.score_func!r}")
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {BALANCE}, got {self.balance!r}")
        if self.dispatch not in DISPATCH:
            raise ValueError(f"dispatch must be one of {DISPATCH}, got {self.dispatch!r}")
        if not self.route_scale > 0:
            raise ValueError(f"route_scale must be > 0, got {self.route_scale!r}")
        if self.aux_loss_alpha < 0 or self.bias_update_speed < 0:
            raise ValueError(
                f"aux_loss_alpha and bias_update_speed must be >= 0, got {self.aux_loss_alpha}, {self.bias_update_speed}"
            )
        if self.capacity_factor is not None and not self.capacity_factor > 0:
            raise ValueError(f"capacity_factor must be None or > 0, got {self.capacity_factor!r}")


class Gate(nn.Module):
    """Scores the E routed experts for each token and picks K of them."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.randn(cfg.n_experts, cfg.dim) * 0.02)  # (E, D)
        # V3's balancing bias: changes which experts are chosen, never their weights,
        # and is set by a rule, not by gradients, so it is a buffer
        self.register_buffer("bias", torch.zeros(cfg.n_experts))  # (E,)

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
        cfg = self.cfg
        choice = scores + self.bias if cfg.balance == "bias" else scores  # what selection sees
        if cfg.n_groups > 1:
            grouped = choice.view(len(scores), cfg.n_groups, -1)  # (N, groups, E / groups)
            if cfg.balance == "bias":  # group score = sum of its top-2 biased scores
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

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(SwiGLU(cfg.dim, cfg.expert_dim) for _ in range(cfg.n_experts))
        # S shared experts of width H are one SwiGLU of width S*H (their hidden units side by side)
        self.shared_experts = SwiGLU(cfg.dim, cfg.n_shared_experts * cfg.expert_dim) if cfg.n_shared_experts else None
        # routing statistics, refreshed by every forward (read them, don't train on them)
        self.load = torch.zeros(cfg.n_experts)  # (E,) token assignments each expert ran, last forward
        self.indices: torch.Tensor | None = None  # (n, K) experts chosen for the routed tokens, last forward
        self.dropped = 0  # assignments dropped by the capacity limit, last forward
        self.aux_loss: torch.Tensor | None = None  # the auxiliary loss of the last training forward
        self._pending_load = torch.zeros(cfg.n_experts)  # load since the last bias update

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., D) -> (..., D). real (N,) bool, optional: False for padding positions,
        which are neither routed nor counted in the load (a batch of short sequences is
        mostly padding, and the bias rule would otherwise balance the padding)."""
        shape = x.shape
        x = x.reshape(-1, self.cfg.dim)  # (N, D)
        y = self.shared_experts(x) if self.shared_experts is not None else torch.zeros_like(x)
        xr = x if real is None else x[real]  # (n, D) the tokens that are routed
        scores = self.gate.scores(xr)  # (n, E)
        weights, indices = self.gate.route(scores)  # (n, K), (n, K)
        keep = self.capacity_mask(indices) if (self.training and self.cfg.capacity_factor) else None
        routed = self.routed(xr, weights, indices, keep)  # (n, D)
        y = y + routed if real is None else y.index_add(0, real.nonzero()[:, 0], routed)
        self._record(scores, indices, keep)
        return y.view(shape)

    def routed(self, x, weights, indices, keep=None) -> torch.Tensor:
        """sum_k weights[:, k] * expert_{indices[:, k]}(x), by the configured dispatch."""
        how = self.cfg.dispatch
        if how == "auto":  # on a CPU, grouped_mm measured slower than sorted (benchmarks/bench_moe.py)
            how = "grouped_mm" if x.is_cuda else "sorted"
        if how == "grouped_mm" and not grouped_mm_available(x, self.cfg):
            how = "sorted"
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
    def _record(self, scores, indices, keep):
        E = self.cfg.n_experts
        chosen = indices if keep is None else indices[keep]
        load = torch.bincount(chosen.flatten(), minlength=E).to(torch.float32).cpu()  # (E,)
        self.load, self.indices = load, indices.detach()
        self.dropped = 0 if keep is None else int((~keep).sum())
        self.aux_loss = None
        if self.training:
            self._pending_load += load
            if self.cfg.balance == "aux_loss":
                self.aux_loss = self.balance_loss(scores, indices)

    def balance_loss(self, scores: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Switch/GShard auxiliary loss  alpha * E * sum_i f_i * P_i.

        f_i: the share of the N*K token-expert assignments that went to expert i
        (counted over all K choices, so sum_i f_i = 1); P_i: the mean over tokens
        of expert i's routing probability (sigmoid scores normalised to sum to 1, as
        V3 does). With perfect balance f_i = P_i = 1/E and the loss is alpha.
        Only P carries gradient: f is a count.
        """
        E = self.cfg.n_experts
        probs = scores / scores.sum(-1, keepdim=True)  # (N, E); a no-op for softmax
        f = torch.bincount(indices.flatten(), minlength=E).to(scores.dtype) / indices.numel()  # (E,)
        P = probs.mean(0)  # (E,)
        # L_aux = alpha * E * sum_i f_i * P_i
        return self.cfg.aux_loss_alpha * E * (f * P).sum()

    @torch.no_grad()
    def update_bias(self) -> None:
        """DeepSeek-V3's auxiliary-loss-free rule, run after each optimiser step:
        b_i += gamma * sign(mean_load - load_i): busy experts become less attractive."""
        if self.cfg.balance != "bias" or self._pending_load.sum() == 0:
            return
        load = self._pending_load
        # b_i += gamma * sign(mean_load - load_i)
        self.gate.bias += self.cfg.bias_update_speed * torch.sign(load.mean() - load).to(self.gate.bias)
        self._pending_load = torch.zeros_like(load)

    # ------------------------------------------------------------ parameters
    def params_total(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def params_active(self) -> int:
        """Gate + shared experts + the K routed experts one token uses."""
        per_expert = sum(p.numel() for p in self.experts[0].parameters())
        return self.params_total() - (self.cfg.n_experts - self.cfg.top_k) * per_expert


# ------------------------------------------------------------------ dispatch


def dispatch_loop(x, weights, indices, experts, keep=None) -> torch.Tensor:
    """For each expert, gather its tokens, run it, add back: DeepSeek-V3's inference loop."""
    y = torch.zeros_like(x)  # (N, D)
    chosen = indices if keep is None else indices.masked_fill(~keep, -1)  # -1: dropped
    for i, expert in enumerate(experts):
        token, slot = torch.where(chosen == i)  # which tokens chose expert i, and as which of their K
        if len(token):
            y.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
    return y


def dispatch_sorted(x, weights, indices, experts, keep=None, grouped_mm=False) -> torch.Tensor:
    """Sort the A = N*K token copies by expert, run each expert on one contiguous block."""
    N, K = indices.shape
    token = torch.arange(N, device=x.device).repeat_interleave(K)  # (A,) token of each assignment
    expert, weight = indices.flatten(), weights.flatten()  # (A,), (A,)
    if keep is not None:
        token, expert, weight = token[keep.flatten()], expert[keep.flatten()], weight[keep.flatten()]
    order = expert.argsort(stable=True)  # assignments grouped by expert
    token, weight = token[order], weight[order]
    counts = torch.bincount(expert, minlength=len(experts))  # (E,) rows per block
    xs = x[token]  # (A, D): expert 0's rows, then expert 1's, ...
    ys = run_grouped(xs, counts, experts) if grouped_mm else run_blocks(xs, counts, experts)  # (A, D)
    # y_n = sum over n's assignments of weight * expert output
    return torch.zeros_like(x).index_add_(0, token, ys * weight[:, None])


def run_blocks(xs: torch.Tensor, counts: torch.Tensor, experts) -> torch.Tensor:
    """Rows xs (A, D) sorted by expert, counts (E,) rows each -> expert outputs (A, D)."""
    blocks = xs.split(counts.tolist())
    return torch.cat([expert(block) for expert, block in zip(experts, blocks)])


def grouped_mm_available(x: torch.Tensor, cfg: MoEConfig) -> bool:
    """torch._grouped_mm is private: it may be missing, and wants float32/bfloat16
    rows whose strides are multiples of 16 bytes (widths divisible by 4 in float32)."""
    if not hasattr(torch, "_grouped_mm") or x.dtype not in (torch.float32, torch.bfloat16):
        return False
    per_16_bytes = 16 // x.element_size()
    return cfg.dim % per_16_bytes == 0 and cfg.expert_dim % per_16_bytes == 0


def run_grouped(xs: torch.Tensor, counts: torch.Tensor, experts) -> torch.Tensor:
    """run_blocks in three kernels: torch._grouped_mm multiplies block e by expert e's matrix."""
    offs = counts.cumsum(0).to(torch.int32)  # (E,) end row of each block
    w1 = torch.stack([e.w1.weight for e in experts]).transpose(1, 2)  # (E, D, H)
    w3 = torch.stack([e.w3.weight for e in experts]).transpose(1, 2)  # (E, D, H)
    w2 = torch.stack([e.w2.weight for e in experts]).transpose(1, 2)  # (E, H, D)
    # SwiGLU(x) = W2 (SiLU(W1 x) * (W3 x)), block by block
    h = F.silu(torch._grouped_mm(xs, w1, offs=offs)) * torch._grouped_mm(xs, w3, offs=offs)  # (A, H)
    return torch._grouped_mm(h, w2, offs=offs)  # (A, D)
