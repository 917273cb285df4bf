"""Scaling out on torch.distributed: processes, ranks and the collectives toyds uses.

Under `torchrun --nproc_per_node W` a script runs as W processes (ranks) that talk
through torch.distributed: gloo on CPU, NCCL on GPUs, the same code. Each rank runs
the same program on its own share of the work, and collectives combine the
shares: all_reduce sums a tensor over ranks (so every rank holds the total),
all_to_all sends each rank its own slice of every other rank's tensor.

Two ways of splitting the work build on this module:
    toyds/parallel/data_parallel.py    every rank holds the whole model and takes its rows of
                              each batch; gradients are averaged (DDP)
    toyds/parallel/expert_parallel.py  every rank holds E/W of an MoE layer's routed experts;
                              tokens travel to their experts' ranks and back

Without torchrun's environment everything here degrades to one process (rank 0 of
1), so the same script runs with plain `python`. Shown in examples/06_distributed.py.

Shapes: W world size.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from toyds.experiment.output import seed_everything

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


def all_reduce_sum(t: torch.Tensor, group=None) -> torch.Tensor:
    """The sum over ranks of a tensor (a new tensor on t's device; t itself is left alone)."""
    if get_world_size(group) == 1:
        return t.clone()
    out = t.to(_comm_device(group), copy=True)
    dist.all_reduce(out, group=group)
    return out.to(t.device)


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
