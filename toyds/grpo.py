"""GRPO: reinforcement learning from rewards alone, with no value network.

Group Relative Policy Optimisation (DeepSeekMath, section 4.1; DeepSeek-R1,
section 2.2.1) is how R1-Zero learned to reason. For each question it samples a
group of G answers, scores each with the reward, and makes the better-than-average
ones more likely. The group's own mean is the baseline, so no critic is trained:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)            the advantage
    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)                per token
    L_t = -( min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps_high) A_i) - beta KL_t )
    KL_t = pi_ref / pi - log(pi_ref / pi) - 1                          (Schulman's k3, >= 0)

and the per-token losses are averaged over each completion, then over completions.
The loop, numbered as in `train_grpo`: 1. sample G completions per prompt with the
KV cache; 2. score them; 3. advantages per group; 4. one or more clipped policy
steps, with a KL leash to a frozen reference model.

How the toy differs: prompts are arithmetic, rewards are toyds/rewards.py rules
(any function of text can drive it, a learned reward model included); one process
unless given `parallel` (data parallelism under torchrun, toyds/distributed.py); "dapo" (Yu et al. 2025) and "dr_grpo"
(Liu et al. 2025) are offered as the token-level aggregations later work proposed;
scale="none" drops the std division, as Dr. GRPO does. A group whose G rewards are
all equal has advantages 0 and teaches nothing: the trainer counts such groups.
Shown in examples/03_r1_zero.py.

Shapes: B completions in a batch (prompts x G), T completion tokens, G group size.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from toyds.arithmetic import Problem
from toyds.evaluate import score, summarise
from toyds.rewards import combined_reward_batch
from toyds.sampling import completion_logprobs, generate
from toyds.tokenizer import Tokenizer
from toyds.train import make_optimizer

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
SCALES = ("group", "none")

# ------------------------------------------------------------ pure functions


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) for rewards (N,) laid out as N / group_size consecutive groups.

    scale="group": A_i = (r_i - mean_g) / (std_g + eps), std with Bessel's correction
    (as TRL computes it); scale="none": A_i = r_i - mean_g (Dr. GRPO). A group of
    equal rewards gives zeros, never NaN.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    N = rewards.shape[0]
    if rewards.dim() != 1 or group_size < 1 or N % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size; got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    if scale == "group" and group_size < 2:
        raise ValueError("scale='group' needs group_size >= 2 (a group of one has no spread)")
    r = rewards.float().view(-1, group_size)  # (N / G, G)
    centred = r - r.mean(1, keepdim=True)
    if scale == "none":
        return centred.flatten()
    # A_i = (r_i - mean_g) / (std_g + eps)
    return (centred / (r.std(1, keepdim=True) + eps)).flatten()


def zero_signal_groups(rewards: torch.Tensor, group_size: int) -> int:
    """How many groups have all-equal rewards (advantage 0 for every member)."""
    r = rewards.view(-1, group_size)
    return int((r == r[:, :1]).all(1).sum())


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: exp(d) - d - 1 with d = ref - logp."""
    d = ref_logp - logp
    # KL_t = exp(ref - logp) - (ref - logp) - 1  (>= 0, and 0 where the two agree)
    return torch.exp(d) - d - 1


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    loss_type: str = "grpo",
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """The clipped GRPO objective, negated. logp, old_logp, ref_logp, mask (B, T); advantages (B,).

    Returns (loss, stats) with stats = {"clip_frac", "kl", "ratio"} over unmasked tokens.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference model's log-probabilities)")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    m = mask.to(logp.dtype)  # (B, T)
    A = advantages[:, None]  # (B, 1), one advantage for every token of a completion
    # ratio_t = pi / pi_old = exp(logp - old_logp)
    ratio = torch.exp(logp - old_logp)
    # surrogate_t = min(ratio A, clip(ratio, 1 - eps, 1 + eps_high) A)
    surrogate = torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * A)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    # L_t = -(surrogate_t - beta KL_t)
    token_loss = -(surrogate - beta * kl)  # (B, T)

    if loss_type == "grpo":  # mean over each completion's tokens, then over completions
        loss = ((token_loss * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    elif loss_type == "dapo":  # every token in the batch weighs the same
        loss = (token_loss * m).sum() / m.sum().clamp(min=1)
    else:  # "dr_grpo": a constant denominator, so length does not rescale the gradient
        B, T = logp.shape
        loss = (token_loss * m).sum() / (B * (max_len if max_len is not None else T))

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clipped = ((ratio < 1 - clip_eps) & (A < 0)) | ((ratio > 1 + eps_high) & (A > 0))
        stats = {
            "clip_frac": float((clipped.to(m.dtype) * m).sum() / n),
            "kl": float((kl * m).sum() / n),
            "ratio": float((ratio * m).sum() / n),
        }
    return loss, stats


# ------------------------------------------------------------------- trainer

RewardFn = Callable[..., list]  # fn(completions=[str], answer=[int], prompts=[str]) -> [float]


@dataclass
class GRPOConfig:
    steps: int = 80  # policy iterations, each on a fresh batch of samples
    prompts_per_step: int = 16  # questions per batch
    group_size: int = 8  # G completions sampled per question
    max_new_tokens: int = 64  # a completion is cut here (its reward is then usually 0)
    temperature: float = 1.0  # sampling temperature of the rollouts
    lr: float = 5e-5  # AdamW learning rate (constant); 3e-4 and up broke the scratchpad
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the global gradient norm (0 = off)
    updates_per_batch: int = 1  # mu: policy steps per sampled batch (1 = strictly on-policy)
    clip_eps: float = 0.2  # PPO clip range, lower side (and upper unless clip_eps_high)
    clip_eps_high: float | None = None  # upper clip range (DAPO's clip-higher), None = clip_eps
    loss_type: str = "grpo"  # "grpo", "dapo" or "dr_grpo" token aggregation
    scale: str = "group"  # "group" divides advantages by the group std, "none" does not
    beta: float = 0.02  # weight of the k3 KL penalty to the reference model (0 = no reference)
    eval_every: int = 0  # run eval_fn every this many steps (0 = only at the end)
    save_every: int = 0  # write the checkpoint every this many steps (0 = only at the end)
    seed: int = 0  # fixes prompt order and sampling
    progress: bool = True  # show a tqdm bar

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "updates_per_batch"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"GRPOConfig.{name} must be a positive integer, got {v!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (the group is the baseline), got {self.group_size}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for exploration, got {self.temperature}")
        if self.lr <= 0 or self.beta < 0 or self.clip_eps <= 0:
            raise ValueError(f"need lr > 0, beta >= 0, clip_eps > 0; got {self.lr}, {self.beta}, {self.clip_eps}")


def reward_columns(problems: Sequence) -> dict[str, list]:
    """The dataset columns a TRL-style reward receives, one entry per completion.

    A problem with a `columns()` method (toyds/countdown.py: numbers, target) gives
    its own; an arithmetic Problem gives `answer`. Every problem gives `prompts`.
    """
    rows = [p.columns() if hasattr(p, "columns") else {"answer": p.answer} for p in problems]
    cols = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    return {**cols, "prompts": [p.prompt() for p in problems]}


def total_reward(reward_fns: Sequence[RewardFn], texts: list[str], problems: list) -> torch.Tensor:
    """Sum of every reward function's scores, (B,)."""
    kwargs = dict(completions=texts, **reward_columns(problems))
    total = torch.zeros(len(texts))
    for fn in reward_fns:
        r = fn(**kwargs)
        if len(r) != len(texts):
            raise ValueError(f"reward function {getattr(fn, '__name__', fn)!r} returned {len(r)} scores "
                             f"for {len(texts)} completions")
        total += torch.tensor(r, dtype=torch.float32)
    return total


def arithmetic_measures(problems: list[Problem], texts: list[str]) -> dict:
    """The default per-step log: rule-based accuracy, format, thinking and length (toyds/evaluate.py)."""
    m = summarise(score(problems, texts))
    return {k: m[k] for k in ("accuracy", "format_rate", "think_rate", "mean_length")}


def train_grpo(
    model,
    problems: list,
    cfg: GRPOConfig,
    reward_fns: Sequence[RewardFn] = (combined_reward_batch,),
    ref_model=None,
    eval_fn: Callable | None = None,
    checkpoint: str | Path | None = None,
    desc: str = "grpo",
    parallel=None,
    measure_fn: Callable[[list, list[str]], dict] = arithmetic_measures,
) -> list[dict]:
    """Improve `model` on `problems` with GRPO; returns one logged dict per step.

    The rewards drive learning; measure_fn(problems, completions) -> dict of floats
    (one problem per completion) is logged every step with rule-based checks, so a
    learned reward's promises can be held to the truth. Problems need only
    `.prompt()` (and `.columns()` for rewards that want more than `answer`).
    ref_model defaults to a frozen copy of the starting model (when beta > 0).
    parallel: a toyds.distributed.DataParallel, to run data-parallel under torchrun:
    each rank samples its own prompts (its own seed), DDP averages the gradients,
    the logged figures are means over ranks, and only rank 0 shows the bar and
    writes the checkpoint. Every rank makes the same call.
    """
    if not problems:
        raise ValueError("no training problems given")
    tok = Tokenizer()
    device = next(model.parameters()).device
    if cfg.beta > 0 and ref_model is None:
        ref_model = copy.deepcopy(model)
    if ref_model is not None:
        ref_model.eval().requires_grad_(False)
    seed = cfg.seed if parallel is None else parallel.seed(cfg.seed)  # ranks draw different prompts
    rng = random.Random(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    net = model if parallel is None else parallel.wrap(model)  # DDP averages gradients in backward
    main = parallel is None or parallel.is_main
    G = cfg.group_size
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not (cfg.progress and main), leave=False)
    for step in bar:
        # 1. sample G completions for each of the batch's prompts (KV cache, temperature)
        batch = rng.sample(problems, min(cfg.prompts_per_step, len(problems)))
        group = [p for p in batch for _ in range(G)]  # (B,) each prompt G times, consecutively
        prompts = [tok.encode(p.prompt()) for p in group]
        longest = max(len(p) for p in prompts)
        max_new = min(cfg.max_new_tokens, model.cfg.block_size - longest)
        g = generate(model, prompts, max_new, temperature=cfg.temperature, tokenizer=tok, generator=gen)

        # 2. score them: the driving rewards, and the rule-based measures for the log
        rewards = total_reward(reward_fns, g.texts, group)  # (B,)
        measures = {k: v for k, v in measure_fn(group, g.texts).items() if isinstance(v, (int, float))}

        # 3. group-relative advantages
        adv = group_advantages(rewards, G, cfg.scale).to(device)  # (B,)
        dead = zero_signal_groups(rewards, G)

        # 4. clipped policy steps on this batch, leashed to the reference model
        model.train()
        seq, pad_mask, mask, P = g.sequences, g.pad_mask, g.completion_mask, g.prompt_len
        with torch.no_grad():
            old_logp = completion_logprobs(model, seq, pad_mask, P, tok) if cfg.updates_per_batch > 1 else None
            ref_logp = completion_logprobs(ref_model, seq, pad_mask, P, tok) if cfg.beta > 0 else None
        for _ in range(cfg.updates_per_batch):
            logp = completion_logprobs(net, seq, pad_mask, P, tok)  # (B, T)
            loss, stats = policy_loss(
                logp, logp.detach() if old_logp is None else old_logp, adv, mask,
                cfg.clip_eps, cfg.clip_eps_high, cfg.loss_type, ref_logp, cfg.beta, cfg.max_new_tokens,
            )
            aux = model.aux_loss()
            opt.zero_grad(set_to_none=True)
            (loss if aux is None else loss + aux).backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if parallel is not None:
                parallel.sync_moe_load(model)  # the bias rule sees the load of every rank
            model.update_moe_biases()  # no-op for a dense model

        row = {
            "step": step + 1,
            "reward": float(rewards.mean()),
            **measures,
            "zero_signal_groups": dead,
            "loss": loss.item(),
            **stats,
            "seconds": time.perf_counter() - t0,
        }
        if parallel is not None:  # the mean over ranks of every logged figure
            row = {**row, **parallel.reduce({k: float(v) for k, v in row.items() if k != "step"})}
            row["zero_signal_groups"] = round(row["zero_signal_groups"] * parallel.world_size)  # a count: the sum
        last = step == cfg.steps - 1
        if eval_fn is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            row.update({f"eval_{k}": v for k, v in eval_fn(model).items()})
        history.append(row)
        shown = {k: row[k] for k in ("accuracy", "format_rate", "mean_length") if row.get(k) is not None}
        bar.set_postfix(reward=f"{row['reward']:.2f}", **{k[:3]: f"{v:.2f}" for k, v in shown.items()},
                        kl=f"{row['kl']:.3f}")
        if checkpoint is not None and main and (last or (cfg.save_every and (step + 1) % cfg.save_every == 0)):
            from toyds.checkpoint import save_checkpoint

            save_checkpoint(checkpoint, model, meta={"stage": "grpo", "step": step + 1, "history": history})
    return history
