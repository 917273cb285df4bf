"""Dispatch: sending each token through the K experts its router chose, and back.

Three ways that compute the same thing, y_n = sum_k g_{n,k} FFN_{i(n,k)}(x_n)
(tests/test_moe.py checks each against a plain loop over tokens, forward and backward):

    "loop"        for each expert, find its tokens, run it on them, add back
                  (DeepSeek-V3's own inference code)
    "sorted"      sort the N*K token copies by expert, run each expert on one
                  contiguous block, scatter back (what fast MoE kernels do)
    "grouped_mm"  the sorted layout through torch._grouped_mm: one kernel for all
                  experts (a private PyTorch API; "sorted" is used where it is
                  missing or cannot take the widths or dtype)

MoEConfig.dispatch picks one; "auto" chooses by device: grouped_mm on CUDA, where
one kernel for all experts is the point, and the loop on a CPU. On a CPU every path
ends in the same E small matrix multiplies, one per expert, and the loop adds the
least around them: no argsort of the N*K copies, no concatenation, one scatter per
expert instead of one big one. examples/benchmarks/bench_moe.py times all three
against a dense SwiGLU of the same active width (README chapter 1 has the ratios).
The expert-parallel layer (parallel/expert_parallel.py) reuses run_blocks and
run_grouped on the rows it receives.

Shapes: N tokens, D model width, E experts, K top-k, H expert width, A = N*K copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resolve_dispatch(cfg, x: torch.Tensor) -> str:
    """The dispatch a layer of config cfg uses for rows x: "auto" resolved by device, and
    "grouped_mm" falling back to "sorted" where torch._grouped_mm cannot take them."""
    how = cfg.dispatch
    if how == "auto":  # on a CPU the loop measured fastest (see the opener)
        how = "grouped_mm" if x.is_cuda else "loop"
    if how == "grouped_mm" and not grouped_mm_available(x, cfg):
        how = "sorted"
    return how


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


def grouped_mm_available(x: torch.Tensor, cfg) -> bool:
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
