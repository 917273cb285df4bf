"""Distillation: a small student learns from a larger teacher, from its text or its logits.

DeepSeek-R1 built its small dense models by fine-tuning them on 800k samples the big
model wrote, kept only if right and readable (sections 2.3.3, 2.4), and found this
beats running the same RL on the small model (4.1). That is *sequence-level*
(black-box) distillation: only text passes from teacher to student. *White-box*
distillation also matches the teacher's next-token distributions, softened by a
temperature tau (Hinton et al. 2015):

    P = softmax(teacher / tau),  Q = softmax(student / tau)
    forward  KL(P || Q)                     Hinton: cover all of the teacher's mass
    reverse  KL(Q || P)                     MiniLLM (Gu et al. 2023): seek its modes
    jsd      beta KL(P || M) + (1 - beta) KL(Q || M),  M = beta P + (1 - beta) Q   (GKD)
    kd   = tau^2 * mean of the divergence over completion tokens   (tau^2 undoes the
           1 / tau^2 the softening puts on the gradients, so tau can change freely)
    loss = alpha * kd + (1 - alpha) * next-token loss on the data
On-policy (GKD, Agarwal et al. 2024): the student writes the completions and the
teacher scores each of its tokens, so it is corrected on the mistakes it makes.

How the toy differs: all toyds models share one character vocabulary, so the two
distributions line up by construction; the filter is toyds/rewards.py's rules (R1 also
used a model judge and dropped mixed-language chains); GKD's on/off-policy mix is a
fixed share of steps, not a coin per batch. Shown in examples/04_distillation.py.

Shapes: B batch, T time (positions), V vocabulary, P padded prompt, N new tokens.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from toyds.arithmetic import Problem
from toyds.evaluate import complete
from toyds.rewards import accuracy_reward, format_reward
from toyds.sampling import generate
from toyds.tokenizer import Tokenizer
from toyds.train import TrainConfig, collate, encode_pairs, lr_at, make_optimizer, masked_lm_loss

KINDS = ("forward", "reverse", "jsd")

# ------------------------------------------------------------ pure functions


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last axis, with 0 log 0 = 0."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), 0.0).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0, kind: str = "forward", beta: float = 0.5) -> torch.Tensor:
    """tau^2 * the mean divergence between teacher and student over positions where mask is True.

    Logits (B, T, V) (any leading shape works), mask (B, T). Positions where mask is
    False are never read, so padding may hold anything, even inf or NaN. The teacher
    is detached: only the student learns. Everything is computed from log_softmax,
    so logits of size 1e4 are fine. beta is read only for kind="jsd", where it must
    lie strictly between 0 and 1: at either end M equals P or Q and the divergence
    is identically 0 (use "forward" or "reverse" for those limits instead).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if kind == "jsd" and not (isinstance(beta, (int, float)) and 0 < beta < 1):
        raise ValueError(f"jsd needs 0 < beta < 1 (at 0 or 1 it is identically 0), got {beta!r}")
    if student_logits.shape != teacher_logits.shape or mask.shape != student_logits.shape[:-1]:
        raise ValueError(f"shapes do not match: student {tuple(student_logits.shape)}, teacher "
                         f"{tuple(teacher_logits.shape)}, mask {tuple(mask.shape)} (want (B, T, V), (B, T, V), (B, T))")
    keep = mask.bool()
    s = student_logits[keep].float()  # (n, V) the unmasked positions only
    t = teacher_logits.detach()[keep].float()  # (n, V)
    # log P = log_softmax(teacher / tau),  log Q = log_softmax(student / tau)
    logp, logq = F.log_softmax(t / temperature, -1), F.log_softmax(s / temperature, -1)
    if kind == "forward":
        div = _kl(logp, logq)  # (n,)
    elif kind == "reverse":
        div = _kl(logq, logp)
    else:
        # log M = logsumexp(log beta + log P, log(1 - beta) + log Q)
        logm = torch.logaddexp(math.log(beta) + logp, math.log(1 - beta) + logq)
        # jsd = beta KL(P || M) + (1 - beta) KL(Q || M)
        div = beta * _kl(logp, logm) + (1 - beta) * _kl(logq, logm)
    # kd = tau^2 * sum(div) / (unmasked positions)
    return temperature**2 * div.sum() / max(div.numel(), 1)


def check_compatible(teacher, student, longest: int | None = None) -> None:
    """Raise a ValueError unless the two models can be distilled on sequences of `longest` tokens.

    Logit distillation compares distributions token by token, so both models must
    index the same vocabulary; both must also fit the longest sequence they will read.
    """
    tv, sv = teacher.cfg.vocab_size, student.cfg.vocab_size
    if tv != sv:
        raise ValueError(f"teacher and student must share the tokenizer: teacher vocab_size={tv}, "
                         f"student vocab_size={sv}")
    if longest is not None:
        for name, m in (("teacher", teacher), ("student", student)):
            if longest > m.cfg.block_size:
                raise ValueError(f"a sequence has {longest} tokens but the {name}'s block_size is {m.cfg.block_size} "
                                 f"(teacher {teacher.cfg.block_size}, student {student.cfg.block_size})")


# ---------------------------------------------- black box: rejection sampling


def correct_and_formatted(completion: str, problem: Problem) -> bool:
    """The default filter: right answer, <think>...</think><answer>...</answer> format, and finished.

    "Finished" (ends in <eos>) is my addition: a student fine-tuned on text that
    never stops would learn to run on to the block limit.
    """
    return (accuracy_reward(completion, problem.answer) == 1 and format_reward(completion) == 1
            and completion.rstrip().endswith("<eos>"))


def rejection_sample(teacher, problems: list[Problem], k: int, temperature: float = 1.0,
                     max_new_tokens: int | None = None, seed: int = 0,
                     keep: Callable[[str, Problem], bool] | None = None, prefix: str = "",
                     dedupe: bool = False) -> tuple[list[tuple[str, str]], dict]:
    """The teacher writes k completions per problem; the ones `keep` accepts become SFT pairs.

    Returns (pairs, stats): pairs are (prompt, completion) strings for
    toyds.train.train_supervised, in problem order; stats = {"samples", "kept",
    "keep_rate", "problems", "problems_kept" (at least one kept), "coverage",
    "pairs" (returned, after any dedupe)}. keep(completion, problem) -> bool.
    Duplicates are kept by default, so a problem the teacher solves the same way k
    times weighs k times; dedupe=True keeps one copy of each (prompt, completion).
    prefix is forced at the start of every completion (e.g. "<think>") and is part
    of the pair, as toyds.evaluate.complete returns it.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (samples per problem) must be an integer >= 1, got {k!r}")
    if not problems:
        raise ValueError("no problems given to rejection_sample")
    keep = keep or correct_and_formatted
    # 1. the teacher samples k completions per problem (text is all we take from it)
    texts = complete(teacher, problems, temperature, k, max_new_tokens, seed=seed, prefix=prefix)
    # 2. the rule-based reward keeps the right, well-formed ones
    accepted = [bool(keep(t, problems[j // k])) for j, t in enumerate(texts)]
    pairs, seen, solved = [], set(), 0
    for i, p in enumerate(problems):
        kept_here = [(p.prompt(), texts[j]) for j in range(i * k, (i + 1) * k) if accepted[j]]
        solved += bool(kept_here)
        for pair in kept_here:
            if not (dedupe and pair in seen):
                seen.add(pair)
                pairs.append(pair)
    n, kept = len(texts), sum(accepted)
    stats = {"samples": n, "kept": kept, "keep_rate": kept / n, "problems": len(problems),
             "problems_kept": solved, "coverage": solved / len(problems), "pairs": len(pairs)}
    return pairs, stats


# ------------------------------------------------ white box: logit distillation


@dataclass
class KDConfig:
    alpha: float = 1.0  # weight of the KD term; 1 - alpha weighs the next-token loss on the data
    temperature: float = 2.0  # softening tau of both distributions (Hinton used 2-20)
    kind: str = "forward"  # "forward" (Hinton), "reverse" (MiniLLM) or "jsd" (GKD)
    beta: float = 0.5  # the jsd interpolation weight, 0 < beta < 1
    on_policy: float = 0.0  # share of batches the student writes itself (GKD's lambda; True = 1, False = 0)
    max_new_tokens: int = 48  # on-policy completions are cut here
    sample_temperature: float = 1.0  # temperature of the student's on-policy samples (0 = greedy)
    train: TrainConfig = field(default_factory=TrainConfig)  # steps, batch, lr schedule, clip, seed, bar
    cache_teacher: bool = True  # off-policy: run the teacher once per example up front, not once per step

    def __post_init__(self):
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.kind == "jsd" and not 0 < self.beta < 1:
            raise ValueError(f"jsd needs 0 < beta < 1, got {self.beta!r}")
        if not (isinstance(self.on_policy, (int, float)) and 0 <= self.on_policy <= 1):
            raise ValueError(f"on_policy must be a share in [0, 1] (or a bool), got {self.on_policy!r}")
        if self.on_policy and self.alpha == 0:
            raise ValueError("on_policy > 0 needs alpha > 0: on-policy batches have only the KD term to learn from")
        if self.max_new_tokens < 1 or self.sample_temperature < 0:
            raise ValueError(f"need max_new_tokens >= 1 and sample_temperature >= 0, got "
                             f"{self.max_new_tokens}, {self.sample_temperature}")


def is_on_policy_step(step: int, share: float) -> bool:
    """Spread on-policy steps evenly: exactly floor(n * share) of the first n steps are on-policy."""
    return math.floor((step + 1) * share) > math.floor(step * share)


@torch.no_grad()
def teacher_logprobs(teacher, examples: list[tuple[list[int], int]], batch_size: int = 256) -> list[torch.Tensor]:
    """The teacher's next-token log-probabilities for each encoded example, (len - 1, V) each.

    Off-policy KD reads the same fixed texts again and again, so the teacher's
    distributions can be computed once and stored (large KD pipelines store the
    top-k of them). Log-probabilities serve as logits: softmax(logp / tau) is
    softmax(logits / tau), the constant log Z cancels.
    """
    tok, device = Tokenizer(), next(teacher.parameters()).device
    was = teacher.training
    teacher.eval()
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        x, _, _ = collate(chunk, tok.pad_id, device)  # (b, T)
        logp = torch.log_softmax(teacher(x).float(), -1)  # (b, T, V)
        out += [row[: len(ids) - 1].cpu() for row, (ids, _) in zip(logp, chunk)]
    teacher.train(was)
    return out


def stack_cached(rows: list[torch.Tensor], T: int, device) -> torch.Tensor:
    """Right-pad cached (len_i, V) rows to one (B, T, V) tensor, as collate pads the batch."""
    out = torch.zeros(len(rows), T, rows[0].shape[-1], device=device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r.to(device)
    return out


def off_policy_losses(student, teacher, x, y, m, cfg: KDConfig, t_logits=None) -> tuple[torch.Tensor, dict]:
    """alpha * kd + (1 - alpha) * next-token loss on a collated batch x, y, m (B, T).

    t_logits (B, T, V): the teacher's cached logits or log-probabilities for x, if given."""
    logits = student(x)  # (B, T, V)
    lm = masked_lm_loss(logits, y, m)
    if cfg.alpha == 0:  # plain SFT: the teacher is not even run
        return lm, {"lm": lm.item()}
    if t_logits is None:
        with torch.no_grad():
            t_logits = teacher(x)  # (B, T, V)
    kd = kd_loss(logits, t_logits, m, cfg.temperature, cfg.kind, cfg.beta)
    # loss = alpha * kd + (1 - alpha) * lm
    loss = cfg.alpha * kd + (1 - cfg.alpha) * lm
    return loss, {"kd": kd.item(), "lm": lm.item()}


def on_policy_losses(student, teacher, prompts: list[list[int]], cfg: KDConfig, tok: Tokenizer,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """KD on completions the student samples for `prompts` (token ids); no ground truth used."""
    # 1. the student writes completions (left-padded prompts, then N new tokens)
    longest = max(len(p) for p in prompts)
    room = min(student.cfg.block_size, teacher.cfg.block_size) - longest
    if room < 1:
        raise ValueError(f"a prompt of {longest} tokens leaves no room to generate within block sizes "
                         f"teacher {teacher.cfg.block_size}, student {student.cfg.block_size}")
    g = generate(student, prompts, min(cfg.max_new_tokens, room), cfg.sample_temperature,
                 tokenizer=tok, generator=generator)
    seq, pad, P = g.sequences, g.pad_mask, g.prompt_len
    # 2. both models read the same sequence; logits at P-1 .. end-1 predict the N completion tokens
    s_logits = student(seq, pad_mask=pad)[:, P - 1 : -1]  # (B, N, V)
    with torch.no_grad():
        t_logits = teacher(seq, pad_mask=pad)[:, P - 1 : -1]  # (B, N, V)
    # 3. the teacher scores every token the student wrote, <eos> included
    kd = kd_loss(s_logits, t_logits, g.completion_mask, cfg.temperature, cfg.kind, cfg.beta)
    return kd, {"kd": kd.item(), "length": g.lengths.float().mean().item()}


@torch.no_grad()
def evaluate_kd(student, teacher, pairs: list[tuple[str, str]], cfg: KDConfig, on_policy: bool = False,
                batch_size: int = 256, seed: int = 0) -> float:
    """Mean KD loss of student to teacher over pairs: on the pairs' completions, or on the
    student's own samples for the pairs' prompts (on_policy=True, seeded)."""
    tok = Tokenizer()
    was = student.training, teacher.training
    student.eval(), teacher.eval()
    gen = torch.Generator(device=next(student.parameters()).device).manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        if on_policy:
            kd, _ = on_policy_losses(student, teacher, [tok.encode(p) for p, _ in chunk], cfg, tok, gen)
        else:
            x, y, m = collate(encode_pairs(chunk, tok), tok.pad_id, next(student.parameters()).device)
            kd = kd_loss(student(x), teacher(x), m, cfg.temperature, cfg.kind, cfg.beta)
        total, count = total + kd.item() * len(chunk), count + len(chunk)
    student.train(was[0]), teacher.train(was[1])
    return total / max(count, 1)


def train_logit_kd(student, teacher, pairs: list[tuple[str, str]], cfg: KDConfig, eval_fn=None,
                   desc: str = "logit kd", step_callback=None) -> list[dict]:
    """Distil teacher into student on (prompt, completion) pairs; one logged dict per step.

    A row holds step, loss, lr, seconds, on_policy (bool), "kd" (unless alpha = 0),
    "lm" (off-policy steps) and "length" (mean sampled length, on-policy steps).

    Each step is off-policy (a batch of pairs, loss = alpha kd + (1 - alpha) lm) or,
    for a cfg.on_policy share of steps, on-policy (the student samples for the batch's
    prompts and learns the teacher's distributions on its own tokens). The batch
    order, schedule and clipping are train_supervised's, so alpha = 0 with no
    on-policy steps trains exactly as train_supervised does. eval_fn(student) -> dict
    runs every cfg.train.eval_every steps and at the end; step_callback(step, student)
    after every step. The teacher is put in eval mode and never updated.
    """
    tc = cfg.train
    tok = Tokenizer()
    examples = encode_pairs(pairs, tok)
    if not examples:
        raise ValueError("no training pairs given")
    check_compatible(teacher, student, max(len(ids) for ids, _ in examples) - 1)
    device = next(student.parameters()).device
    rng = random.Random(tc.seed)
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    opt = make_optimizer(student, tc.lr, tc.weight_decay, tc.betas)
    teacher_was = teacher.training
    teacher.eval()  # an MoE teacher must not count loads or add aux losses
    # off-policy steps read fixed texts: the teacher's distributions for them, once
    cached = teacher_logprobs(teacher, examples) if cfg.cache_teacher and cfg.alpha > 0 and cfg.on_policy < 1 else None
    student.train()
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(range(tc.steps), desc=desc, disable=not tc.progress, leave=False)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        picked = rng.choices(range(len(examples)), k=tc.batch_size)  # the same draws as choices(examples)
        batch = [examples[i] for i in picked]
        on = is_on_policy_step(step, cfg.on_policy)
        if on:
            loss, stats = on_policy_losses(student, teacher, [ids[:plen] for ids, plen in batch], cfg, tok, gen)
        else:
            x, y, m = collate(batch, tok.pad_id, device)
            t_logits = stack_cached([cached[i] for i in picked], x.shape[1], device) if cached else None
            loss, stats = off_policy_losses(student, teacher, x, y, m, cfg, t_logits)
        aux = student.aux_loss()  # MoE balancing loss of the student's last (training) forward
        opt.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(student.parameters(), tc.grad_clip)
        opt.step()
        student.update_moe_biases()  # no-op for a dense student
        if step_callback is not None:
            step_callback(step, student)
        row = {"step": step + 1, "loss": loss.item(), **stats, "on_policy": on, "lr": lr_at(step, tc),
               "seconds": time.perf_counter() - t0}
        if eval_fn is not None and (step == tc.steps - 1 or (tc.eval_every and (step + 1) % tc.eval_every == 0)):
            row.update(eval_fn(student))
        history.append(row)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in ("kd", "lm") if k in row})
    teacher.train(teacher_was)
    return history
