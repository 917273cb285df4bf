"""Distillation: a small student learns from a larger teacher, from its text or its logits.

DeepSeek-R1 built its small dense models by fine-tuning them on 800k samples the big
model wrote, kept only if right and readable (sections 2.3.3, 2.4), and found this
beats running the same RL on the small model (4.1). That is *sequence-level*
(black-box) distillation (distill/rejection.py makes its data; train/supervised.py
fits it): only text passes from teacher to student. *White-box* distillation also
matches the teacher's next-token distributions, softened by a temperature tau
(Hinton et al. 2015):

    kd   = tau^2 * mean over completion tokens of D(P, Q)     (distill/losses.py: forward, reverse, jsd)
    loss = alpha * kd + (1 - alpha) * next-token loss on the data
    P = softmax(teacher / tau),  Q = softmax(student / tau)

On-policy steps (distill/on_policy.py, GKD) let the student write the completions
and the teacher score each of its tokens, so it is corrected on its own mistakes.
How the toy differs: all toyds models share one character vocabulary, so the two
distributions line up by construction; the off-policy teacher's distributions are
computed once per text and cached (large KD pipelines store their top-k). Against
TRL (trl.experimental.gkd's GKDTrainer): the same jsd and beta; TRL does not
multiply by tau^2. Shown in examples/04_distillation.py.

Shapes: B batch, T time (positions), V vocabulary, P padded prompt, N new tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from toyds.core.layers import evaluating
from toyds.core.tokenizer import Tokenizer
from toyds.distill.losses import KINDS, kd_loss
from toyds.distill.on_policy import ON_POLICY_LOSSES, is_on_policy_step, on_policy_losses
from toyds.train.batches import collate, collate_packed, encode_pairs
from toyds.train.losses import masked_lm_loss
from toyds.train.supervised import TrainConfig, lr_at
from toyds.train.trainer import fit, make_optimizer


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


# ------------------------------------------------ white box: logit distillation


@dataclass
class KDConfig:
    alpha: float = 0.5  # weight of the KD term; 1 - alpha weighs the next-token loss on the data
    temperature: float = 1.0  # softening tau of both distributions (Hinton used 2-20; a confident teacher's
    #                           near one-hot traces have little "dark knowledge" to soften: examples/04)
    kind: str = "forward"  # "forward" (Hinton), "reverse" (MiniLLM) or "jsd" (GKD)
    beta: float = 0.5  # the jsd interpolation weight, 0 < beta < 1
    on_policy: float = 0.0  # share of batches the student writes itself (GKD's lambda; True = 1, False = 0)
    max_new_tokens: int = 48  # on-policy completions are cut here
    sample_temperature: float = 1.0  # temperature of the student's on-policy samples (0 = greedy)
    on_policy_loss: str = "divergence"  # on-policy steps: "divergence" (kind, beta, over the whole
    #                                     distributions) or "sampled_token" (the teacher's log-ratio of the
    #                                     sampled token as a reward: distill/on_policy.py)
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
        if self.on_policy_loss not in ON_POLICY_LOSSES:
            raise ValueError(f"on_policy_loss must be one of {ON_POLICY_LOSSES}, got {self.on_policy_loss!r}")
        if not (isinstance(self.on_policy, (int, float)) and 0 <= self.on_policy <= 1):
            raise ValueError(f"on_policy must be a share in [0, 1] (or a bool), got {self.on_policy!r}")
        if self.on_policy and self.alpha == 0:
            raise ValueError("on_policy > 0 needs alpha > 0: on-policy batches have only the KD term to learn from")
        if self.max_new_tokens < 1 or self.sample_temperature < 0:
            raise ValueError(f"need max_new_tokens >= 1 and sample_temperature >= 0, got "
                             f"{self.max_new_tokens}, {self.sample_temperature}")


@torch.no_grad()
def teacher_logprobs(teacher, examples: list[tuple[list[int], int]], batch_size: int = 256) -> list[torch.Tensor]:
    """The teacher's next-token log-probabilities for each encoded example, (len - 1, V) each.

    Off-policy KD reads the same fixed texts again and again, so the teacher's
    distributions can be computed once and stored (large KD pipelines store the
    top-k of them). Log-probabilities serve as logits: softmax(logp / tau) is
    softmax(logits / tau), the constant log Z cancels.
    """
    tok, device = Tokenizer(), next(teacher.parameters()).device
    out = []
    with evaluating(teacher):
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            x, _, _ = collate(chunk, tok.pad_id, device)  # (b, T)
            logp = torch.log_softmax(teacher(x).float(), -1)  # (b, T, V)
            out += [row[: len(ids) - 1].cpu() for row, (ids, _) in zip(logp, chunk)]
    return out


def stack_cached(rows: list[torch.Tensor], T: int, device, layout=None, n_rows: int | None = None) -> torch.Tensor:
    """Cached (len_i, V) rows as one (B, T, V) tensor, laid out as the batch was: right-padded one per
    row as `collate` does, or at their (row, offset) in packed rows (layout from collate_packed)."""
    layout = layout or [(i, 0, i) for i in range(len(rows))]
    out = torch.zeros(n_rows or len(rows), T, rows[0].shape[-1], device=device)
    for r, at, i in layout:
        out[r, at : at + len(rows[i])] = rows[i].to(device)
    return out


def off_policy_losses(student, teacher, x, y, m, cfg: KDConfig, t_logits=None, segments=None) -> tuple[torch.Tensor, dict]:
    """alpha * kd + (1 - alpha) * next-token loss on a collated batch x, y, m (B, T) (packed if segments given).

    t_logits (B, T, V): the teacher's cached logits or log-probabilities for x, if given."""
    logits = student(x, segments=segments)  # (B, T, V)
    lm = masked_lm_loss(logits, y, m)
    if cfg.alpha == 0:  # plain SFT: the teacher is not even run
        return lm, {"lm": lm.item()}
    if t_logits is None:
        with torch.no_grad():
            t_logits = teacher(x, segments=segments)  # (B, T, V)
    kd = kd_loss(logits, t_logits, m, cfg.temperature, cfg.kind, cfg.beta)
    # loss = alpha * kd + (1 - alpha) * lm
    loss = cfg.alpha * kd + (1 - cfg.alpha) * lm
    return loss, {"kd": kd.item(), "lm": lm.item()}


@torch.no_grad()
def evaluate_kd(student, teacher, pairs: list[tuple[str, str]], cfg: KDConfig, on_policy: bool = False,
                batch_size: int = 256, seed: int = 0) -> float:
    """Mean KD loss of student to teacher over pairs: on the pairs' completions, or on the
    student's own samples for the pairs' prompts (on_policy=True, seeded)."""
    tok = Tokenizer()
    gen = torch.Generator(device=next(student.parameters()).device).manual_seed(seed)
    total, count = 0.0, 0
    with evaluating(student, teacher):
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            if on_policy:
                kd, _ = on_policy_losses(student, teacher, [tok.encode(p) for p, _ in chunk], cfg, tok, gen)
            else:
                x, y, m = collate(encode_pairs(chunk, tok), tok.pad_id, next(student.parameters()).device)
                kd = kd_loss(student(x), teacher(x), m, cfg.temperature, cfg.kind, cfg.beta)
            total, count = total + kd.item() * len(chunk), count + len(chunk)
    return total / max(count, 1)


def train_logit_kd(student, teacher, pairs: list[tuple[str, str]], cfg: KDConfig, *, eval_fn=None,
                   step_callback=None, parallel=None, checkpoint=None, desc: str = "logit kd",
                   progress: bool | None = None) -> list[dict]:
    """Distil teacher into student on (prompt, completion) pairs; one logged dict per step.

    A row holds step, loss, lr, grad_norm, seconds, on_policy (bool), "kd" (unless
    alpha = 0), "lm" (off-policy steps) and "length" (mean sampled length, on-policy).

    Each step is off-policy (a batch of pairs, loss = alpha kd + (1 - alpha) lm) or,
    for a cfg.on_policy share of steps, on-policy (the student samples for the batch's
    prompts and learns the teacher's distributions on its own tokens). The batch
    order and schedule are train_supervised's, so alpha = 0 with no on-policy steps
    trains exactly as train_supervised does. The keyword arguments are every toyds
    trainer's (toyds/train/trainer.py); under data parallelism each rank takes its rows of
    each batch. The teacher is put in eval mode and never updated.
    """
    tc = cfg.train
    tok = Tokenizer()
    examples = encode_pairs(pairs, tok)
    if not examples:
        raise ValueError("no training pairs given")
    check_compatible(teacher, student, max(len(ids) for ids, _ in examples) - 1)
    device = next(student.parameters()).device
    rng = random.Random(tc.seed)
    gen = torch.Generator(device=device).manual_seed(tc.seed if parallel is None else parallel.seed(tc.seed))
    net = student if parallel is None else parallel.wrap(student)  # DDP averages gradients in backward
    # off-policy steps read fixed texts: the teacher's distributions for them, once
    with evaluating(teacher):  # an MoE teacher must not count loads or add balancing losses
        cached = teacher_logprobs(teacher, examples) if cfg.cache_teacher and cfg.alpha > 0 and cfg.on_policy < 1 else None
    student.train()

    def step_fn(step, update):
        picked = rng.choices(range(len(examples)), k=tc.batch_size)  # the same draws as choices(examples)
        on = is_on_policy_step(step, cfg.on_policy)
        with evaluating(teacher):
            if on:
                prompts = [examples[i][0][: examples[i][1]] for i in picked]
                if parallel is not None:  # this rank's share of the prompts
                    prompts = [prompts[i] for i in parallel.shard(torch.arange(len(prompts)))[0].tolist()]
                loss, stats = on_policy_losses(student, teacher, prompts, cfg, tok, gen, net=net)
            else:
                if parallel is not None:  # this rank's examples of the batch, weighted as train_supervised does
                    n_all = sum(len(examples[i][0]) - examples[i][1] for i in picked)
                    picked = [picked[i] for i in parallel.shard(torch.arange(len(picked)))[0].tolist()]
                batch = [examples[i] for i in picked]
                seg = layout = None
                if tc.pack:  # several examples per row (toyds/train/supervised.py: collate_packed)
                    x, y, m, seg, layout = collate_packed(batch, tok.pad_id, device, return_layout=True)
                else:
                    x, y, m = collate(batch, tok.pad_id, device)
                t = stack_cached([cached[i] for i in picked], x.shape[1], device, layout, len(x)) if cached else None
                loss, stats = off_policy_losses(net, teacher, x, y, m, cfg, t, seg)
                if parallel is not None:
                    loss = loss * (parallel.world_size * int(m.sum()) / max(n_all, 1))
        update(loss)
        return {"loss": loss.item(), **stats, "on_policy": on}

    opt = make_optimizer(student, tc.lr, tc.weight_decay, tc.betas, tc.optimizer)
    return fit(student, step_fn, tc.steps, opt=opt, lr_at=lambda step: lr_at(step, tc), grad_clip=tc.grad_clip,
               parallel=parallel, eval_fn=eval_fn, eval_every=tc.eval_every, step_callback=step_callback,
               checkpoint=checkpoint, save_every=tc.save_every, meta={"stage": desc}, desc=desc, progress=progress,
               postfix=("kd", "lm"))
