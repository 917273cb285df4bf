"""GRPO: reinforcement learning from rewards alone, with no value network.

Group Relative Policy Optimisation (DeepSeekMath, section 4.1; DeepSeek-R1,
section 2.2.1) is how R1-Zero learned to reason. For each question it samples a
group of G answers, scores each with the rewards, and makes the better-than-average
ones more likely; the group's own mean is the baseline (rl/grpo_loss.py has the
maths). The loop, numbered as in `train_grpo`:

    1. sample G completions per prompt with the KV cache
    2. score them: r = sum_f w_f r_f over weighted rule-based rewards (rl/reward_registry.py)
    3. group-relative advantages A_i
    4. one or more clipped policy steps (train/trainer.py's optimiser step), with a
       k3 KL leash to a frozen reference model

Names follow TRL's GRPOTrainer and GRPOConfig. How the toy differs from TRL 1.16:
one micro-batch per generation batch and no gradient accumulation, so with one
process "dapo" and "bnpo" coincide (they part under data parallelism); toyds's
examples use the paper's loss_type "grpo" where TRL defaults to "dapo", beta 0.02
where TRL's is 0.0, and use_bias_correction_kl off where TRL's is on (GRPOConfig's
comments say why). Shown in examples/03_r1_zero.py.

Shapes: B completions (prompts x G) of T tokens, G group size, F reward functions.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from toyds.core.sampling import Generation, completion_logprobs, generate
from toyds.core.tokenizer import Tokenizer
from toyds.rl.grpo_loss import IMPORTANCE_LEVELS, LOSS_TYPES, SCALES, group_advantages, policy_loss, zero_signal_groups
from toyds.rl.rewards import reward_name
from toyds.train.trainer import fit, make_optimizer

# ----------------------------------------------------------------- rewards

RewardFn = Callable[..., list]  # fn(completions=[str], prompts=[str], **columns) -> [float | None]


def weighted_rewards(reward_fns: Sequence[RewardFn], weights: Sequence[float], completions: list[str],
                     problems: list) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total (B,), {name: scores (B,)}): the weighted sum over functions, as TRL adds them.

    A function scores a row None or NaN when it does not apply; such terms count 0
    (nansum), and a row that no function scored is NaN (group_advantages gives it
    advantage 0). Each problem gives the functions its columns (`problem.columns()`,
    e.g. {"answer": 936}) as keyword lists, as TRL passes dataset columns.
    """
    columns = [p.columns() for p in problems]
    kwargs = {k: [c[k] for c in columns] for k in columns[0]} if columns else {}
    per_fn = {}
    for fn in reward_fns:
        name = reward_name(fn)
        r = fn(completions=completions, prompts=[p.prompt() for p in problems], **kwargs)
        if len(r) != len(completions):
            raise ValueError(f"reward function {name!r} returned {len(r)} scores for {len(completions)} completions")
        per_fn[name] = torch.tensor([math.nan if v is None else float(v) for v in r])  # (B,)
    scores = torch.stack(list(per_fn.values()), 1)  # (B, F)
    w = torch.tensor([float(x) for x in weights])  # (F,)
    # r = sum_f w_f r_f over the functions that scored the row
    total = (scores * w).nansum(1)
    total[scores.isnan().all(1)] = math.nan
    return total, per_fn


# ------------------------------------------------------------------- trainer


@dataclass
class GRPOConfig:
    steps: int = 80  # policy iterations, each on a fresh batch of samples
    prompts_per_step: int = 16  # questions per batch
    group_size: int = 8  # G completions sampled per question
    max_new_tokens: int = 64  # a completion is cut here (its reward is then usually 0); dr_grpo's constant
    temperature: float = 1.0  # sampling temperature of the rollouts
    lr: float = 5e-5  # AdamW learning rate (constant)
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the global gradient norm (0 = off)
    updates_per_batch: int = 1  # mu (TRL's num_iterations): policy steps per sampled batch (1 = on-policy)
    clip_eps: float = 0.2  # PPO clip range, lower side (and upper unless clip_eps_high); TRL's epsilon
    clip_eps_high: float | None = None  # upper clip range (DAPO's clip-higher), None = clip_eps; TRL's epsilon_high
    loss_type: str = "grpo"  # "grpo", "bnpo", "dapo", "dr_grpo", "cispo" or "sapo" (rl/grpo_loss.py; TRL's meanings;
    #                          TRL's default is "dapo": toyds keeps the paper's per-completion mean, as R1 wrote it)
    scale: str = "group"  # advantage scaling: "group" std, "batch" std, or "none" (TRL's scale_rewards)
    beta: float = 0.02  # weight of the k3 KL penalty to the reference model (0 = no reference; TRL's
    #                     default is 0.0: a small leash keeps a tiny policy's worked traces readable)
    use_bias_correction_kl: bool = False  # weight k3 by the importance ratio (TRL's option, on by default
    #                                       there; off here: with one update per batch the ratio is 1)
    importance_sampling_level: str = "token"  # "sequence" = GSPO, one ratio per completion (TRL's name, default)
    delta: float | None = None  # cap the unclipped ratio too (two-sided clipping, INTELLECT-2); TRL's default None
    sapo_temperature_pos: float = 1.0  # sapo's gate temperature for A > 0 (TRL's default)
    sapo_temperature_neg: float = 1.05  # ... and for A < 0 (TRL's default)
    top_entropy_quantile: float = 1.0  # only this top share of tokens by entropy carries the loss (1 = all)
    off_policy_mask_threshold: float | None = None  # drop A < 0 completions drifted past this (V3.2); None = off
    mask_truncated_completions: bool = False  # a completion cut at max_new_tokens contributes no loss (TRL's)
    entropy_coef: float = 0.0  # entropy bonus weight (TRL's default 0)
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal, sample more prompts
    max_extra_rounds: int = 4  # dynamic sampling gives up filling the batch after this many extra rounds
    eval_every: int = 0  # run eval_fn every this many steps (0 = only at the end)
    save_every: int = 0  # write the checkpoint every this many steps (0 = only at the end)
    seed: int = 0  # fixes prompt order and sampling

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "updates_per_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
                raise ValueError(f"GRPOConfig.{name} must be a positive integer, got {v!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (the group is the baseline), got {self.group_size}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.importance_sampling_level not in IMPORTANCE_LEVELS:
            raise ValueError(f"importance_sampling_level must be one of {IMPORTANCE_LEVELS}, got "
                             f"{self.importance_sampling_level!r}")
        if not 0 < self.top_entropy_quantile <= 1:
            raise ValueError(f"top_entropy_quantile must be in (0, 1], got {self.top_entropy_quantile!r}")
        if self.delta is not None and not self.delta > 1:
            raise ValueError(f"delta must be None or > 1 (a cap on the ratio above 1 + epsilon), got {self.delta!r}")
        for name in ("sapo_temperature_pos", "sapo_temperature_neg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GRPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not (isinstance(self.max_extra_rounds, int) and self.max_extra_rounds >= 0):
            raise ValueError(f"max_extra_rounds must be an integer >= 0, got {self.max_extra_rounds!r}")
        for name, ok, valid in (("temperature", self.temperature > 0, "> 0 (sampling must explore)"), ("lr", self.lr > 0,
                                "> 0"), ("beta", self.beta >= 0, ">= 0"), ("clip_eps", 0 < self.clip_eps < 1, "in (0, 1)"),
                                ("grad_clip", self.grad_clip >= 0, ">= 0 (0 = off)")):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and ok):
                raise ValueError(f"GRPOConfig.{name} must be a finite number {valid}, got {v!r}")


def train_grpo(model, problems: list, cfg: GRPOConfig, *, reward_fns: Sequence[RewardFn],
               reward_weights: Sequence[float] | None = None, measure_fn: Callable | None = None, ref_model=None,
               eval_fn=None, step_callback=None, parallel=None, checkpoint=None, desc: str = "grpo",
               progress: bool | None = None, advantage_fn: Callable | None = None) -> list[dict]:
    """Improve `model` on `problems` with GRPO; returns one logged dict per step.

    reward_fns drive learning, weighted by reward_weights (default 1 each; TRL's
    names). Each row logs the total reward, each function's mean ("rewards/<name>"),
    and measure_fn(problems, completions) -> dict if given (e.g. the rule-based
    accuracy, so a learned reward's promises can be held to the truth; or give the
    rules weight 0). Problems need `.prompt()` and `.columns()`. ref_model defaults
    to a frozen copy of the starting model (when beta > 0). advantage_fn, if given,
    replaces group_advantages (same signature; e.g. a workshop participant's own,
    loaded with toyds.workshop.participant.load_function). The other keyword
    arguments are every toyds trainer's (train/trainer.py); under data parallelism
    each rank samples its own prompts (its own seed) and only rank 0 saves.
    """
    if not problems:
        raise ValueError("no training problems given")
    weights = [1.0] * len(reward_fns) if reward_weights is None else list(reward_weights)
    if not reward_fns or len(weights) != len(reward_fns):
        raise ValueError(f"need at least one reward function and one weight per function; got {len(reward_fns)} "
                         f"functions and {len(weights)} weights")
    tok = Tokenizer()
    device = next(model.parameters()).device
    if cfg.beta > 0 and ref_model is None:
        ref_model = copy.deepcopy(model)
    if ref_model is not None:
        ref_model.eval().requires_grad_(False)
    seed = cfg.seed if parallel is None else parallel.seed(cfg.seed)  # ranks draw different prompts
    rng = random.Random(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    net = model if parallel is None else parallel.wrap(model)  # DDP averages gradients in backward
    G = cfg.group_size

    def rollout(batch):
        # 1. sample G completions for each of the batch's prompts (KV cache, temperature)
        group = [p for p in batch for _ in range(G)]  # (B,) each prompt G times, consecutively
        prompts = [tok.encode(p.prompt()) for p in group]
        max_new = min(cfg.max_new_tokens, model.cfg.block_size - max(len(p) for p in prompts))
        g = generate(model, prompts, max_new, temperature=cfg.temperature, tokenizer=tok, generator=gen)
        # 2. score them: the weighted rewards drive learning; every function's mean is logged
        rewards, per_fn = weighted_rewards(reward_fns, weights, g.texts, group)  # (B,)
        return group, g, rewards, per_fn

    def step_fn(step, update):
        n_prompts = min(cfg.prompts_per_step, len(problems))
        group, g, rewards, per_fn = rollout(rng.sample(problems, n_prompts))
        zero_share = zero_signal_groups(rewards, G) / n_prompts
        extra = 0
        if cfg.dynamic_sampling:  # DAPO: keep only groups with a spread of rewards, refill with new prompts
            group, g, rewards, per_fn, extra = refill(group, g, rewards, per_fn, n_prompts)

        # 3. group-relative advantages
        adv = (advantage_fn or group_advantages)(rewards, G, cfg.scale).to(device)  # (B,)

        # 4. clipped policy steps on this batch, leashed to the reference model
        model.train()
        seq, pad_mask, mask, P = g.sequences, g.pad_mask, g.completion_mask, g.prompt_len
        truncated = ~((g.completions == tok.eos_id) & mask).any(1)  # (B,) cut at the cap: no <eos>
        if cfg.mask_truncated_completions:
            mask = mask & ~truncated[:, None]
        n_items = float(mask.sum() if parallel is None else parallel.all_reduce_sum(mask.sum().float()))
        with torch.no_grad():
            old_logp = completion_logprobs(model, seq, pad_mask, P, tok) if cfg.updates_per_batch > 1 else None
            ref_logp = completion_logprobs(ref_model, seq, pad_mask, P, tok) if cfg.beta > 0 else None
        for _ in range(cfg.updates_per_batch):
            logp, entropy = completion_logprobs(net, seq, pad_mask, P, tok, with_entropy=True)  # (B, T) each
            loss, stats = policy_loss(
                logp, logp.detach() if old_logp is None else old_logp, adv, mask, clip_eps=cfg.clip_eps,
                clip_eps_high=cfg.clip_eps_high, loss_type=cfg.loss_type, ref_logp=ref_logp, beta=cfg.beta,
                use_bias_correction_kl=cfg.use_bias_correction_kl, max_completion_length=cfg.max_new_tokens,
                num_items_in_batch=n_items, num_processes=1 if parallel is None else parallel.world_size,
                importance_sampling_level=cfg.importance_sampling_level, delta=cfg.delta,
                sapo_temperature_pos=cfg.sapo_temperature_pos, sapo_temperature_neg=cfg.sapo_temperature_neg,
                entropies=entropy.detach() if not cfg.entropy_coef else entropy,
                top_entropy_quantile=cfg.top_entropy_quantile, off_policy_mask_threshold=cfg.off_policy_mask_threshold,
                entropy_coef=cfg.entropy_coef)
            update(loss)
        row = {"loss": loss.item(), "reward": float(rewards.nanmean()),
               **{f"rewards/{n}": float(r.nanmean()) for n, r in per_fn.items()},
               "mean_length": float(g.lengths.float().mean()), "truncated_share": float(truncated.float().mean()),
               "zero_signal_share": zero_share, "extra_rollouts": extra,
               "trained_zero_signal_share": zero_signal_groups(rewards, G) / (len(group) // G), **stats}
        if measure_fn is not None:
            row.update(measure_fn(group, g.texts))
        return row

    def refill(group, g, rewards, per_fn, n_prompts):
        """Dynamic sampling: drop zero-signal groups; sample new prompts until n_prompts groups have a
        spread (or max_extra_rounds pass). Returns the kept rollouts and how many extra were sampled."""
        parts, extra = [], 0
        for round_ in range(cfg.max_extra_rounds + 1):
            r = rewards.view(-1, G)
            keep = ~(r == r[:, :1]).all(1) & ~r.isnan().all(1)  # (groups,)
            if round_ == cfg.max_extra_rounds and not keep.any() and not sum(len(p[0]) for p in parts):
                keep[:] = True  # nothing had a spread: train on the last round rather than on nothing
            rows = keep.repeat_interleave(G)
            parts.append(([p for p, k in zip(group, rows.tolist()) if k], _select(g, rows), rewards[rows],
                          {n: v[rows] for n, v in per_fn.items()}))
            have = sum(len(p[0]) for p in parts) // G
            if have >= n_prompts or round_ == cfg.max_extra_rounds:
                break
            group, g, rewards, per_fn = rollout(rng.sample(problems, min(n_prompts - have, len(problems))))
            extra += len(group)
        return (*_concat(parts, G * n_prompts, tok.pad_id), extra)

    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    return fit(model, step_fn, cfg.steps, opt=opt, lr_at=lambda step: cfg.lr, grad_clip=cfg.grad_clip,
               parallel=parallel, eval_fn=eval_fn, eval_every=cfg.eval_every, step_callback=step_callback,
               checkpoint=checkpoint, save_every=cfg.save_every, meta={"stage": desc}, desc=desc,
               progress=progress, postfix=("reward", "mean_length", "kl"))


def _select(g: Generation, rows: torch.Tensor) -> Generation:
    """The rows of a Generation."""
    return Generation(g.sequences[rows], g.pad_mask[rows], g.prompt_len, g.completion_mask[rows], g.logprobs[rows],
                      [t for t, k in zip(g.texts, rows.tolist()) if k])


def _concat(parts, limit: int, pad_id: int):
    """Join kept rollouts of several rounds into one Generation of at most `limit` rows; prompts are
    left-padded and completions right-padded to the widest round."""
    gens = [g for _, g, _, _ in parts]
    P = max(g.prompt_len for g in gens)
    N = max(g.completion_mask.shape[1] for g in gens)
    seqs, pads, masks, logprobs = [], [], [], []
    for g in gens:
        left, right = P - g.prompt_len, N - g.completion_mask.shape[1]
        seqs.append(torch.nn.functional.pad(g.sequences, (left, right), value=pad_id))
        pads.append(torch.nn.functional.pad(g.pad_mask, (left, right), value=False))
        masks.append(torch.nn.functional.pad(g.completion_mask, (0, right), value=False))
        logprobs.append(torch.nn.functional.pad(g.logprobs, (0, right), value=0.0))
    seq, pad, mask, logp = (torch.cat(x)[:limit] for x in (seqs, pads, masks, logprobs))
    texts = [t for g in gens for t in g.texts][:limit]
    group = [p for grp, _, _, _ in parts for p in grp][:limit]
    rewards = torch.cat([r for _, _, r, _ in parts])[:limit]
    per_fn = {n: torch.cat([f[n] for _, _, _, f in parts])[:limit] for n in parts[0][3]}
    return group, Generation(seq, pad, P, mask, logp, texts), rewards, per_fn
