"""Supervised training: pretraining and SFT on (prompt, completion) pairs.

Both are next-token prediction. Pretraining a base model and supervised
fine-tuning differ only in the data (a task in toyds/tasks/ builds both); in each,
the prompt tokens are masked out of the loss (train/losses.py), so the model is
trained to *answer* `347+589=`, never to predict the question:

    loss = - sum_t m_t log p(x_{t+1} | x_<=t) / sum_t m_t,   m_t = 1 on completion tokens

Schedule: linear warm-up then cosine decay to min_lr. The batches are
train/batches.py's (packed by default); the optimiser step itself (AdamW, clipping,
MoE balancing, non-finite checks) and the loop (history, evaluation, checkpoints,
progress) are train/trainer.py's, shared by every trainer.
A seed fixes the initialisation, the batches and so the whole run, on one machine
and thread count.

How the toy differs: batches are sampled with replacement from a small list of
examples, no gradient accumulation or mixed precision, one process unless given
`parallel` (toyds/parallel/data_parallel.py: data parallelism under torchrun).

Shapes: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from toyds.core.layers import evaluating
from toyds.core.tokenizer import Tokenizer
from toyds.efficient.mtp import loss_with_mtp
from toyds.train.batches import collate, collate_packed, encode_pairs
from toyds.train.losses import masked_lm_loss
from toyds.train.trainer import OPTIMIZERS, fit, make_optimizer

SCHEDULES = ("cosine", "wsd")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimiser steps
    batch_size: int = 64  # sequences per step
    lr: float = 3e-3  # peak learning rate, after warm-up
    min_lr: float = 3e-4  # learning rate at the end of the cosine decay
    warmup: int = 50  # steps of linear warm-up from 0 to lr
    weight_decay: float = 0.1  # AdamW decoupled weight decay on matrices (not norms)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    eval_every: int = 0  # run eval_fn every this many steps (0 = only at the end)
    save_every: int = 0  # write the checkpoint every this many steps (0 = only at the end)
    pack: bool = True  # pack each batch's sequences into shared rows (same loss, fewer padded positions)
    mtp_lambda: float = 0.3  # weight of the multi-token prediction loss, for models with mtp_depth > 0 (V3: 0.3)
    seed: int = 0  # fixes the batch order (and, via the caller, the initialisation)
    optimizer: str = "adamw"  # "adamw"; "muon": Muon for the blocks' hidden matrices; "muon_attention": attention's only
    schedule: str = "cosine"  # after warm-up: "cosine" decay to min_lr, or "wsd" (stable, then a linear decay)
    decay_share: float = 0.2  # wsd: the last share of the steps decays linearly to min_lr

    @classmethod
    def recipe(cls, steps: int, lr: float = 3e-3, batch_size: int = 64, seed: int = 0, **fields) -> TrainConfig:
        """The schedule every toyds example trains with: warm-up over a tenth of the run
        (at most 50 steps), then cosine decay from lr to lr / 10."""
        return cls(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup=min(50, steps // 10), seed=seed,
                   **fields)

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {v!r}")
        if not (math.isfinite(self.lr) and 0 < self.min_lr <= self.lr):
            raise ValueError(f"need finite learning rates with 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0) or not self.weight_decay >= 0:
            raise ValueError(f"need grad_clip >= 0 (0 = off) and weight_decay >= 0, got {self.grad_clip}, "
                             f"{self.weight_decay}")
        if not (0 <= self.warmup < self.steps):
            raise ValueError(f"warmup must be in [0, steps), got {self.warmup} with steps={self.steps}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 < self.decay_share <= 1:
            raise ValueError(f"TrainConfig.decay_share must be in (0, 1], got {self.decay_share!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimiser step `step` (0-based)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "wsd":  # warmup-stable-decay: lr until the last decay_share of the steps, then linearly down
        start = cfg.steps - max(1, round(cfg.decay_share * cfg.steps))
        if step < start:
            return cfg.lr
        return cfg.lr + (cfg.min_lr - cfg.lr) * (step - start + 1) / (cfg.steps - start)
    # cosine from lr down to min_lr over the remaining steps
    progress = (step - cfg.warmup) / max(1, cfg.steps - 1 - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def eval_loss(model, examples, pad_id: int, batch_size: int = 256) -> float:
    """Mean masked loss over examples (completion tokens only)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluating(model):
        for i in range(0, len(examples), batch_size):
            x, y, m = collate(examples[i : i + batch_size], pad_id, device)
            n = int(m.sum())
            total += masked_lm_loss(model(x), y, m).item() * n
            count += n
    return total / max(count, 1)


def train_supervised(model, pairs: list[tuple[str, str]], cfg: TrainConfig, *, eval_fn=None, step_callback=None,
                     parallel=None, checkpoint=None, desc: str = "train", progress: bool | None = None,
                     tokenizer: Tokenizer | None = None) -> list[dict]:
    """Train on (prompt, completion) pairs; returns the history, one dict per step.

    The keyword arguments are every toyds trainer's (train/trainer.py: fit):
    eval_fn(model) -> dict every cfg.eval_every steps and at the end (figures
    prefixed "eval_"); step_callback(step, model) after every step; parallel, a
    toyds.parallel.data_parallel.DataParallel, to run data-parallel (every rank makes this
    same call); checkpoint, a path written every cfg.save_every steps and at the end.
    """
    tok = tokenizer or Tokenizer()
    examples = encode_pairs(pairs, tok)
    if not examples:
        raise ValueError("no training pairs given")
    longest = max(len(ids) for ids, _ in examples)
    if longest > model.cfg.block_size + 1:
        raise ValueError(f"a training example has {longest} tokens; block_size is {model.cfg.block_size}")
    device = next(model.parameters()).device
    rng = random.Random(cfg.seed)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.optimizer)
    net = model if parallel is None else parallel.wrap(model)  # DDP averages gradients in backward
    model.train()

    def step_fn(step, update):
        batch = rng.choices(examples, k=cfg.batch_size)
        if parallel is not None:  # this rank's examples of the global batch
            share = parallel.shard(torch.arange(len(batch)))[0].tolist()
            n_all = sum(len(ids) - plen for ids, plen in batch)  # target tokens of the whole batch
            batch = [batch[i] for i in share]
        extra = {}
        if model.cfg.mtp_depth:  # loss = main + lambda / K sum_k L_k, one row per example (efficient/mtp.py)
            x, y, m = collate(batch, tok.pad_id, device)
            parts = loss_with_mtp(net, x, y, m, cfg.mtp_lambda)
            depths = [parts[f"mtp_{k}"].item() for k in range(1, model.cfg.mtp_depth + 1)]
            loss, extra = parts["loss"], {"loss_main": parts["main"].item(), "loss_mtp": sum(depths) / len(depths)}
        elif cfg.pack:
            x, y, m, seg = collate_packed(batch, tok.pad_id, device)  # (R, T) rows holding several examples
            loss = masked_lm_loss(net(x, segments=seg), y, m)
        else:
            x, y, m = collate(batch, tok.pad_id, device)  # (B, T) one example per row, right-padded
            loss = masked_lm_loss(net(x), y, m)
        if parallel is not None:  # weighted so the mean over ranks is the global loss: w_r = W * n_r / n
            loss = loss * (parallel.world_size * int(m.sum()) / max(n_all, 1))
        update(loss)
        # tokens: the real (non-pad) positions computed; slots: all positions, padding included
        return {"loss": loss.item(), **extra, "tokens": sum(len(ids) - 1 for ids, _ in batch), "slots": x.numel()}

    return fit(model, step_fn, cfg.steps, opt=opt, lr_at=lambda step: lr_at(step, cfg), grad_clip=cfg.grad_clip,
               parallel=parallel, eval_fn=eval_fn, eval_every=cfg.eval_every, step_callback=step_callback,
               checkpoint=checkpoint, save_every=cfg.save_every, meta={"stage": desc}, desc=desc, progress=progress)
