"""GRPO: reinforcement learning from rewards alone, with no value network.

Group Relative Policy Optimisation (DeepSeekMath, section 4.1; DeepSeek-R1,
section 2.2.1) is how R1-Zero learned to reason. For each question it samples a
group of G answers, scores each with the reward, and makes the better-than-average
ones more likely. The group's own mean is the baseline, so no critic is trained:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)            the advantage
    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)                per token
    L_t = -min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps_high) A_i) + beta KL_t
    KL_t = pi_ref / pi - log(pi_ref / pi) - 1                          (Schulman's k3, >= 0)

The loop, numbered as in `train_grpo`: 1. sample G completions per prompt with the
KV cache; 2. score them with weighted reward functions; 3. advantages per group;
4. one or more clipped policy steps (toyds/trainer.py's optimiser step), with a KL
leash to a frozen reference model. Shown in examples/03_r1_zero.py.

Names and meanings follow TRL's GRPOTrainer, so a reader can map one onto the
other: loss_type "grpo" (mean over each completion, then over completions), "bnpo"
(mean over the batch's tokens), "dapo" (sum over tokens / the token count of the
whole generation batch on every rank, `num_items_in_batch`), "dr_grpo" (sum /
(rows x max_completion_length)); scale "group", "batch" or "none"; a row whose
every reward is NaN is left out of its group's statistics and gets advantage 0;
`use_bias_correction_kl` weights k3 by the ratio. How the toy differs from TRL:
one micro-batch per generation batch and no gradient accumulation, so with one
process "dapo" and "bnpo" coincide (they part under data parallelism); the default
loss_type is the paper's "grpo" (TRL's is "dapo") and beta is 0.02 (TRL's 0.0).

Shapes: B completions (prompts x G) of T tokens, G group size, F reward functions.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from toyds.rewards import reward_name
from toyds.sampling import completion_logprobs, generate
from toyds.tokenizer import Tokenizer
from toyds.trainer import fit, make_optimizer

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCALES = ("group", "batch", "none")

# ------------------------------------------------------------ pure functions


def _nanstd(x: torch.Tensor) -> torch.Tensor:
    """Sample std (Bessel's correction) over the last axis, ignoring NaN; NaN for fewer than 2 values."""
    n = (~x.isnan()).sum(-1, keepdim=True)
    return (((x - x.nanmean(-1, keepdim=True)) ** 2).nansum(-1, keepdim=True) / (n - 1)).sqrt()


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) for rewards (N,) laid out as N / group_size consecutive groups.

    scale="group": A_i = (r_i - mean_g) / (std_g + eps), std over the group with
    Bessel's correction; "batch": the std over the whole batch, the mean still the
    group's; "none": A_i = r_i - mean_g (Dr. GRPO). As in TRL, a NaN reward (a row
    no reward function could score) is left out of the statistics and gets
    advantage 0, and a group of equal rewards gives zeros, never NaN.
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
    # A_i = r_i - mean_g, the mean over the group's scored rows
    centred = r - r.nanmean(1, keepdim=True)
    if scale != "none":
        std = _nanstd(r) if scale == "group" else _nanstd(r.flatten()).expand(len(r), 1)  # (N / G, 1)
        # A_i = (r_i - mean_g) / (std + eps)
        centred = centred / (std + eps)
    # unscored rows, and groups with one scored row (no std), teach nothing
    return torch.nan_to_num(centred.flatten(), nan=0.0)


def zero_signal_groups(rewards: torch.Tensor, group_size: int) -> int:
    """How many groups have all-equal rewards (advantage 0 for every member)."""
    r = rewards.view(-1, group_size)
    return int((r == r[:, :1]).all(1).sum())


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: exp(d) - d - 1 with d = ref - logp."""
    d = ref_logp - logp
    # KL_t = exp(ref - logp) - (ref - logp) - 1  (>= 0, and 0 where the two agree)
    return torch.exp(d) - d - 1


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip_eps: float = 0.2, clip_eps_high: float | None = None, loss_type: str = "grpo",
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, use_bias_correction_kl: bool = False,
                max_completion_length: int | None = None, num_items_in_batch: float | None = None,
                num_processes: int = 1) -> tuple[torch.Tensor, dict]:
    """The clipped GRPO objective, negated. logp, old_logp, ref_logp, mask (B, T); advantages (B,).

    max_completion_length is required by "dr_grpo" (its constant denominator);
    num_items_in_batch (completion tokens of the whole generation batch, summed over
    the num_processes ranks) by "dapo". Returns (loss, {"clip_frac", "kl", "ratio"}).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference model's log-probabilities)")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' divides by rows x max_completion_length: pass max_completion_length")
    if loss_type == "dapo" and num_items_in_batch is None:
        raise ValueError("loss_type='dapo' divides by the generation batch's token count: pass num_items_in_batch")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    m = mask.to(logp.dtype)  # (B, T)
    A = advantages[:, None]  # (B, 1), one advantage for every token of a completion
    # ratio_t = pi / pi_old = exp(logp - old_logp)
    ratio = torch.exp(logp - old_logp)
    # surrogate_t = min(ratio A, clip(ratio, 1 - eps, 1 + eps_high) A)
    surrogate = torch.minimum(ratio * A, torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * A)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    # L_t = -surrogate_t + beta KL_t, the KL weighted by the ratio if asked (TRL's use_bias_correction_kl)
    token_loss = -surrogate + beta * (kl * ratio if use_bias_correction_kl else kl)  # (B, T)

    if loss_type == "grpo":  # mean over each completion's tokens, then over completions
        loss = ((token_loss * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":  # every token of this batch weighs the same
        loss = (token_loss * m).sum() / m.sum().clamp(min=1)
    elif loss_type == "dapo":  # every token of the generation batch, on every rank, weighs the same
        loss = (token_loss * m).sum() / max(num_items_in_batch / num_processes, 1e-8)
    else:  # "dr_grpo": a constant denominator, so length does not rescale the gradient
        loss = (token_loss * m).sum() / (logp.shape[0] * max_completion_length)

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clipped = ((ratio < 1 - clip_eps) & (A < 0)) | ((ratio > 1 + eps_high) & (A > 0))
        stats = {
            "clip_frac": float((clipped.to(m.dtype) * m).sum() / n),
            "kl": float((kl * m).sum() / n),
            "ratio": float((ratio * m).sum() / n),
        }
    return loss, stats


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
    lr: float = 5e-5  # AdamW learning rate (constant); 3e-4 and up broke the scratchpad
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the global gradient norm (0 = off)
    updates_per_batch: int = 1  # mu (TRL's num_iterations): policy steps per sampled batch (1 = on-policy)
    clip_eps: float = 0.2  # PPO clip range, lower side (and upper unless clip_eps_high); TRL's epsilon
    clip_eps_high: float | None = None  # upper clip range (DAPO's clip-higher), None = clip_eps; TRL's epsilon_high
    loss_type: str = "grpo"  # "grpo", "bnpo", "dapo" or "dr_grpo" token aggregation (TRL's meanings)
    scale: str = "group"  # advantage scaling: "group" std, "batch" std, or "none" (TRL's scale_rewards)
    beta: float = 0.02  # weight of the k3 KL penalty to the reference model (0 = no reference)
    use_bias_correction_kl: bool = False  # weight k3 by the importance ratio (TRL's option; off there too)
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
    loaded with toyds.workshop.load_function). The other keyword
    arguments are every toyds trainer's (toyds/trainer.py); under data parallelism
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

    def step_fn(step, update):
        # 1. sample G completions for each of the batch's prompts (KV cache, temperature)
        batch = rng.sample(problems, min(cfg.prompts_per_step, len(problems)))
        group = [p for p in batch for _ in range(G)]  # (B,) each prompt G times, consecutively
        prompts = [tok.encode(p.prompt()) for p in group]
        max_new = min(cfg.max_new_tokens, model.cfg.block_size - max(len(p) for p in prompts))
        g = generate(model, prompts, max_new, temperature=cfg.temperature, tokenizer=tok, generator=gen)

        # 2. score them: the weighted rewards drive learning; every function's mean is logged
        rewards, per_fn = weighted_rewards(reward_fns, weights, g.texts, group)  # (B,)

        # 3. group-relative advantages
        adv = (advantage_fn or group_advantages)(rewards, G, cfg.scale).to(device)  # (B,)

        # 4. clipped policy steps on this batch, leashed to the reference model
        model.train()
        seq, pad_mask, mask, P = g.sequences, g.pad_mask, g.completion_mask, g.prompt_len
        n_items = float(mask.sum() if parallel is None else parallel.all_reduce_sum(mask.sum().float()))
        with torch.no_grad():
            old_logp = completion_logprobs(model, seq, pad_mask, P, tok) if cfg.updates_per_batch > 1 else None
            ref_logp = completion_logprobs(ref_model, seq, pad_mask, P, tok) if cfg.beta > 0 else None
        for _ in range(cfg.updates_per_batch):
            logp = completion_logprobs(net, seq, pad_mask, P, tok)  # (B, T)
            loss, stats = policy_loss(
                logp, logp.detach() if old_logp is None else old_logp, adv, mask, clip_eps=cfg.clip_eps,
                clip_eps_high=cfg.clip_eps_high, loss_type=cfg.loss_type, ref_logp=ref_logp, beta=cfg.beta,
                use_bias_correction_kl=cfg.use_bias_correction_kl, max_completion_length=cfg.max_new_tokens,
                num_items_in_batch=n_items, num_processes=1 if parallel is None else parallel.world_size)
            update(loss)
        row = {"loss": loss.item(), "reward": float(rewards.nanmean()),
               **{f"rewards/{n}": float(r.nanmean()) for n, r in per_fn.items()},
               "mean_length": float(g.lengths.float().mean()),
               "zero_signal_share": zero_signal_groups(rewards, G) / len(batch), **stats}
        if measure_fn is not None:
            row.update(measure_fn(group, g.texts))
        return row

    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    return fit(model, step_fn, cfg.steps, opt=opt, lr_at=lambda step: cfg.lr, grad_clip=cfg.grad_clip,
               parallel=parallel, eval_fn=eval_fn, eval_every=cfg.eval_every, step_callback=step_callback,
               checkpoint=checkpoint, save_every=cfg.save_every, meta={"stage": desc}, desc=desc,
               progress=progress, postfix=("reward", "mean_length", "kl"))
