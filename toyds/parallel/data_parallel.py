"""Data parallelism: every rank holds the whole model and takes its rows of each batch.

DistributedDataParallel (DDP) copies rank 0's weights to every rank, each rank
runs forward and backward on its own rows of the global batch, and the gradients
are averaged over ranks during backward, so W ranks take exactly the step one
process takes on the whole batch (up to float summation order):

    g = (1 / W) sum_r g_r,   g_r the gradient of rank r's loss

`DataParallel` gathers what a toyds trainer needs for it: `wrap` (DDP), `shard_batch`
(this rank's rows and a loss weight that keeps the global mean exact), `seed` (ranks
sample different rollouts in GRPO), `reduce` (logged figures averaged over ranks),
`all_reduce_sum` (the MoE load, so the bias rule moves every rank alike) and
`is_main` (only rank 0 shows bars and writes checkpoints). Every trainer in toyds
takes `parallel=DataParallel()`; every rank makes the same calls.

How the toy differs: gloo between processes on one machine; no gradient bucketing
choices, no ZeRO sharding of optimiser state. Expert parallelism and data
parallelism run apart here (toyds/parallel/expert_parallel.py). Shown in examples/06_distributed.py.

Shapes: B global batch rows, T time, W world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from toyds.moe.dispatch import resolve_dispatch
from toyds.parallel.distributed import all_reduce_mean, all_reduce_sum, get_rank, get_world_size, seed_rank
from toyds.parallel.expert_parallel import ExpertParallelMoE


class DataParallel:
    """The pieces a trainer needs to run data-parallel under torchrun.

    Every toyds trainer takes one (parallel=DataParallel()): `wrap` for the model it
    backpropagates through (generate with the unwrapped model), `seed` so ranks
    sample different completions, `shard` for rows of a batch every rank built,
    `reduce` for logged numbers, `is_main` for progress bars and checkpoints.
    """

    def __init__(self, group=None):
        if not dist.is_initialized():
            raise RuntimeError("DataParallel needs a process group: run under torchrun and call "
                               "toyds.parallel.distributed.init() first")
        self.group = group
        self.rank, self.world_size = get_rank(group), get_world_size(group)
        self.is_main = self.rank == 0

    def wrap(self, model: nn.Module) -> nn.parallel.DistributedDataParallel:
        """DDP around model: copies rank 0's weights to all, averages gradients in backward.

        Call the wrapper for forward passes that backpropagate; read model.cfg and
        the MoE layers on the model itself (or wrapper.module). DDP also copies rank
        0's buffers (the gate bias) to the others before each forward; with the load
        summed over ranks before each bias update (balance.after_step) they are equal
        already.
        """
        layers = model.moe_layers() if hasattr(model, "moe_layers") else []
        if any(isinstance(m, ExpertParallelMoE) for m in layers):
            raise ValueError("a model with ExpertParallelMoE layers cannot go inside DDP here: DDP would average "
                             "different experts' gradients; this toy runs EP and DP apart")
        device = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # the loop dispatch skips experts that got no tokens: their weights sit out a step
            find_unused_parameters=any(resolve_dispatch(m.cfg, next(model.parameters())) == "loop" for m in layers),
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

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(t, self.group)
