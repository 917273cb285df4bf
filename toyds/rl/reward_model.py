"""A learned reward model: the alternative DeepSeek-R1 chose *not* to use.

RLHF-style training scores completions with a network trained to imitate human
(or rule) judgements. DeepSeek-R1 (section 2.2.2) avoided one for reasoning:
"the neural reward model may suffer from reward hacking in the large-scale
reinforcement learning process". This module builds the toy version so the
example can show why: a small transformer classifier reads prompt + completion and
predicts the probability that the answer is right,

    r_phi(q, o) = sigmoid(w . h_last + b),   trained with binary cross-entropy
    L = - y log r_phi - (1 - y) log(1 - r_phi),   y = accuracy_reward(o, truth)

on samples from the base model, labelled by the rule-based reward. It is a fair
judge of the base model's outputs. GRPO then optimises the policy against it, and
the policy drifts to completions the classifier never saw, where its judgement is
a guess: the proxy reward climbs while true accuracy lags (examples/03_r1_zero.py).

How the toy differs: real reward models are LLM-sized and trained on human
preference pairs (Bradley-Terry), not on binary labels from a rule. Using rule
labels keeps the truth available, so we can measure the gap.

Shapes: B completions, T tokens, D width.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from toyds.core.layers import evaluating
from toyds.core.model import GPT, GPTConfig
from toyds.core.sampling import left_pad
from toyds.core.tokenizer import Tokenizer
from toyds.evaluate.accuracy import complete
from toyds.train.supervised import TrainConfig, lr_at
from toyds.train.trainer import fit, make_optimizer


class RewardModel(nn.Module):
    """A GPT backbone whose last position's hidden state is read out as one logit."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = GPT(cfg)
        self.head = nn.Linear(cfg.dim, 1)

    def forward(self, idx: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """idx, pad_mask (B, T), left-padded -> logits (B,)."""
        h = self.backbone.features(idx, pad_mask=pad_mask)  # (B, T, D)
        return self.head(h[:, -1])[:, 0]  # left padding puts every row's last token in the last column

    @torch.no_grad()
    def score(self, texts: list[str], batch_size: int = 256) -> list[float]:
        """r_phi for each full text (prompt + completion), as probabilities."""
        tok, device = Tokenizer(), next(self.parameters()).device
        out = []
        with evaluating(self):
            for i in range(0, len(texts), batch_size):
                ids, mask = left_pad([self._ids(t, tok) for t in texts[i : i + batch_size]], tok.pad_id, device)
                out += torch.sigmoid(self(ids, mask)).tolist()
        return out

    def _ids(self, text: str, tok: Tokenizer) -> list[int]:
        ids = tok.encode(text)
        return ids[-self.cfg.block_size :]  # keep the end, where the answer is


def train_reward_model(rm: RewardModel, texts: list[str], labels: list[float], cfg: TrainConfig, *, eval_fn=None,
                       step_callback=None, parallel=None, checkpoint=None, desc: str = "reward model",
                       progress: bool | None = None) -> list[dict]:
    """Fit r_phi to (text, label) pairs with binary cross-entropy; returns the history, one dict per step.

    cfg is the supervised TrainConfig (steps, batch size, schedule, seed); the loop
    and the optimiser step are every toyds trainer's (toyds/train/trainer.py).
    """
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"need one label per text and at least one text; got {len(texts)} texts, {len(labels)} labels")
    tok, device = Tokenizer(), next(rm.parameters()).device
    data = [(rm._ids(t, tok), float(y)) for t, y in zip(texts, labels)]
    rng = random.Random(cfg.seed)
    net = rm if parallel is None else parallel.wrap(rm)
    rm.train()

    def step_fn(step, update):
        batch = rng.choices(data, k=cfg.batch_size)
        if parallel is not None:  # this rank's rows of the batch
            batch = [batch[i] for i in parallel.shard(torch.arange(len(batch)))[0].tolist()]
        ids, mask = left_pad([ids for ids, _ in batch], tok.pad_id, device)
        y = torch.tensor([label for _, label in batch], device=device)
        # L = BCE(sigmoid(logit), y)
        loss = F.binary_cross_entropy_with_logits(net(ids, mask), y)
        update(loss)
        return {"loss": loss.item()}

    opt = make_optimizer(rm, cfg.lr, cfg.weight_decay, cfg.betas)
    return fit(rm, step_fn, cfg.steps, opt=opt, lr_at=lambda step: lr_at(step, cfg), grad_clip=cfg.grad_clip,
               parallel=parallel, eval_fn=eval_fn, eval_every=cfg.eval_every, step_callback=step_callback,
               checkpoint=checkpoint, save_every=cfg.save_every, meta={"stage": desc}, desc=desc, progress=progress)


def judge_from_samples(model, task, problems: list, *, samples: int = 4, layers: int = 1, dim: int = 32,
                       steps: int = 200, lr: float = 1e-3, max_new_tokens: int | None = None, seed: int = 0,
                       desc: str = "reward model") -> tuple[RewardModel, dict]:
    """Chapter 3's narrow judge: r_phi trained on `samples` completions per problem that `model`
    samples (temperature 1), each labelled by the task's rule. Returns the judge and its data's
    figures ({"texts", "positive"}): a fair judge of what `model` writes, and of nothing else."""
    texts = complete(model, problems, temperature=1.0, samples=samples, max_new_tokens=max_new_tokens, seed=seed + 1)
    labels = [task.accuracy(t, problems[i // samples]) for i, t in enumerate(texts)]
    full = [problems[i // samples].prompt() + t for i, t in enumerate(texts)]
    torch.manual_seed(seed)
    config = GPTConfig(n_layer=layers, n_head=4, dim=dim, hidden_dim=3 * dim, block_size=model.cfg.block_size)
    rm = RewardModel(config).to(next(model.parameters()).device)
    train_reward_model(rm, full, labels, TrainConfig.recipe(steps, lr, seed=seed), desc=desc)
    return rm, {"texts": len(texts), "positive": sum(labels)}


def judge_agreement(rm: RewardModel, model, task, problems: list, samples: int = 2, max_new_tokens: int | None = None,
                    seed: int = 0) -> float:
    """How often r_phi > 0.5 agrees with the rule on fresh samples of `model` it was not trained on."""
    fresh = complete(model, problems, temperature=1.0, samples=samples, max_new_tokens=max_new_tokens, seed=seed)
    truth = [task.accuracy(t, problems[i // samples]) for i, t in enumerate(fresh)]
    judged = rm.score([problems[i // samples].prompt() + t for i, t in enumerate(fresh)])
    return sum((j > 0.5) == (y > 0.5) for j, y in zip(judged, truth)) / len(truth)


def as_reward_fn(rm: RewardModel):
    """Wrap r_phi as a GRPO reward function: fn(completions, prompts, **kwargs) -> [float]."""

    def learned_reward(completions, prompts, **kwargs) -> list[float]:
        return rm.score([p + c for p, c in zip(prompts, completions)])

    return learned_reward
