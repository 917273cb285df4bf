"""Supervised training: pretraining and SFT on (prompt, completion) pairs.

Both are next-token prediction. Pretraining a base model and supervised
fine-tuning differ only in the data (toyds/arithmetic.py builds both); in each,
the prompt tokens are masked out of the loss, so the model is trained to
*answer* `347+589=`, never to predict the question (minGPT's adder does the same):

    loss = - sum_t m_t log p(x_{t+1} | x_<=t) / sum_t m_t,   m_t = 1 on completion tokens

Optimiser: AdamW, linear warm-up then cosine decay to min_lr, gradient clipping at
grad_clip. With an MoE feed-forward, the auxiliary balancing loss is added to the
loss, and DeepSeek-V3's bias update runs after every optimiser step. A seed fixes
the initialisation, the batches and so the whole run, on one machine and thread
count.

How the toy differs: batches are sampled with replacement from a small list of
examples, no gradient accumulation or mixed precision, one process unless given
`parallel` (toyds/distributed.py: data parallelism under torchrun).

Shapes: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from toyds.tokenizer import Tokenizer


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
    length_buckets: int = 0  # k > 0: draw k batches at once, sorted by length, so each batch pads little
    seed: int = 0  # fixes the batch order (and, via the caller, the initialisation)
    progress: bool = True  # show a tqdm bar

    @classmethod
    def recipe(cls, steps: int, lr: float = 3e-3, batch_size: int = 64, seed: int = 0, **fields) -> TrainConfig:
        """The schedule every toyds example trains with: warm-up over a tenth of the run
        (at most 50 steps), then cosine decay from lr to lr / 10."""
        return cls(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup=min(50, steps // 10), seed=seed,
                   **fields)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not (0 < self.min_lr <= self.lr):
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if not (isinstance(self.length_buckets, int) and self.length_buckets >= 0):
            raise ValueError(f"length_buckets must be an integer >= 0, got {self.length_buckets!r}")
        if not (0 <= self.warmup < self.steps):
            raise ValueError(f"warmup must be in [0, steps), got {self.warmup} with steps={self.steps}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimiser step `step` (0-based)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    # cosine from lr down to min_lr over the remaining steps
    progress = (step - cfg.warmup) / max(1, cfg.steps - 1 - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.98)) -> torch.optim.AdamW:
    """AdamW that decays matrices only (norm gains and biases are left alone)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def encode_pairs(pairs: list[tuple[str, str]], tok: Tokenizer) -> list[tuple[list[int], int]]:
    """Each (prompt, completion) as (token ids, prompt length)."""
    out = []
    for prompt, completion in pairs:
        p = tok.encode(prompt)
        out.append((p + tok.encode(completion), len(p)))
    return out


def collate(examples: list[tuple[list[int], int]], pad_id: int, device="cpu"):
    """Right-pad a batch. Returns inputs (B, T), targets (B, T), loss mask (B, T).

    targets[b, t] = ids[b, t+1]; mask is True where that target is a completion token.
    """
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), pad_id, dtype=torch.long)
    m = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, (ids, plen) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor(ids[1:])
        m[i, plen - 1 : n] = True  # predict from the last prompt token onwards
    return x.to(device), y.to(device), m.to(device)


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # loss = - sum_t m_t log p(x_{t+1} | x_<=t) / sum_t m_t
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
    m = mask.flatten().float()
    return (nll * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def eval_loss(model, examples, pad_id: int, batch_size: int = 256) -> float:
    """Mean masked loss over examples (completion tokens only)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y, m = collate(examples[i : i + batch_size], pad_id, device)
        n = int(m.sum())
        total += masked_lm_loss(model(x), y, m).item() * n
        count += n
    model.train(was)
    return total / max(count, 1)


def batches(examples: list, cfg: TrainConfig, rng: random.Random):
    """Endless batches sampled with replacement.

    With cfg.length_buckets = k > 0, k batches' worth are drawn at once, sorted by
    length and cut into k batches (served in random order): every example is as
    likely as before, but a batch of short sequences is no longer padded to the
    length of one long one. On a corpus mixing 20-token answers with 130-token
    traces this is most of the compute.
    """
    while True:
        if not cfg.length_buckets:
            yield rng.choices(examples, k=cfg.batch_size)
            continue
        pool = sorted(rng.choices(examples, k=cfg.batch_size * cfg.length_buckets), key=lambda e: len(e[0]))
        chunks = [pool[i : i + cfg.batch_size] for i in range(0, len(pool), cfg.batch_size)]
        rng.shuffle(chunks)
        yield from chunks


def train_supervised(
    model,
    pairs: list[tuple[str, str]],
    cfg: TrainConfig,
    eval_fn=None,
    desc: str = "train",
    tokenizer: Tokenizer | None = None,
    step_callback=None,
    parallel=None,
) -> list[dict]:
    """Train on (prompt, completion) pairs; returns a history of logged dicts.

    eval_fn(model) -> dict is called every cfg.eval_every steps and at the end;
    step_callback(step, model) runs after every optimiser step (e.g. to record
    MoE load for a picture). parallel: a toyds.distributed.DataParallel, to run
    data-parallel (every rank makes this same call; rank 0 shows the bar).
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
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    net = model if parallel is None else parallel.wrap(model)  # DDP averages gradients in backward
    history: list[dict] = []
    model.train()
    t0 = time.perf_counter()
    show = cfg.progress and (parallel is None or parallel.is_main)
    bar = tqdm(range(cfg.steps), desc=desc, disable=not show, leave=False)
    stream = batches(examples, cfg, rng)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x, y, m = collate(next(stream), tok.pad_id, device)
        if parallel is None:
            loss = masked_lm_loss(net(x), y, m)
        else:  # this rank's rows of the global batch, weighted so the mean over ranks is the global loss
            x, y, m, weight = parallel.shard_batch(x, y, m)
            loss = masked_lm_loss(net(x), y, m) * weight
        aux = model.aux_loss()
        total = loss if aux is None else loss + aux
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if parallel is not None:
            parallel.sync_moe_load(model)  # the bias rule sees the global load on every rank
        model.update_moe_biases()  # no-op for dense models
        if step_callback is not None:
            step_callback(step, model)
        loss_value = loss.item() if parallel is None else parallel.reduce({"loss": loss.item()})["loss"]
        bar.set_postfix(loss=f"{loss_value:.3f}")
        last = step == cfg.steps - 1
        if eval_fn is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            row = {"step": step + 1, "loss": loss_value, "seconds": time.perf_counter() - t0}
            row.update(eval_fn(model))
            history.append(row)
        elif last:
            history.append({"step": step + 1, "loss": loss_value, "seconds": time.perf_counter() - t0})
    return history
