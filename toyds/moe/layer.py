"""Mixture of experts: a router sends each token to a few experts, the rest stay off.

A DeepSeekMoE layer (DeepSeek-V3 report, section 2.1.2) replaces one big
feed-forward with many narrow ones. Shared experts see every token; a Gate picks
K of the E routed experts for each token, and only those run:

    h = sum_{s shared} FFN_s(x) + sum_{i in topK} g_i * FFN_i(x)

So the layer *holds* E + S experts' parameters but *uses* K + S per token: more
knowledge at the same compute. The parts, one file each: the config (moe/config.py),
the Gate that picks the K (moe/gate.py), the balancing rules that keep every expert
busy (moe/balance.py), and the dispatch that runs each token through its experts
(moe/dispatch.py: a loop over experts as V3's inference code does, sorted blocks,
or one grouped kernel; tests/test_moe.py checks each against a plain loop over
tokens). The layer returns its routing statistics (load, chosen experts, dropped
tokens) instead of hiding them; moe/routing.py turns them into balance and
specialisation figures.

How the toy differs: experts are tens of units wide, not 2048; one process
(parallel/expert_parallel.py spreads experts over ranks); V3's 8-node limit is left
out; optional Switch-style capacity with token dropping is offered for comparison
(V3 drops no tokens).

Shapes: N tokens (B*T flattened), D model width, E routed experts, K top-k,
H expert width, A = N*K token-expert assignments. Shown in examples/01_moe.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toyds.core.layers import SwiGLU
from toyds.moe import balance
from toyds.moe.config import MoEConfig
from toyds.moe.dispatch import dispatch_loop, dispatch_sorted, resolve_dispatch
from toyds.moe.gate import Gate


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
        self.rules = balance.parse(cfg.balance, cfg.balance_params)
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
        """Keep the routing statistics and, in training, the balancing rules' loss (moe/balance.py)."""
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
