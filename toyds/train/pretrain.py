"""Pretraining a base model: where R1-Zero starts (chapters 3, 5, 7 and 10).

A base for R1-Zero has to *be able* to reason without doing it by default: after
`347+589=` it mostly answers directly, and made to open with `<think>` it executes the
worked traces it was pretrained on (tasks/: the "base" corpus mixes both). RL then
selects the second; it does not teach it. So the base must converge on the traces:

    problems   6,000 distinct training problems, the levels weighted 1:2:3 ("harder":
               half of them from the hardest level; tasks/base.py: level_weights)
    schedule   AdamW at 3e-3, warm-up then cosine decay (train/supervised.py), 800 steps
               for the small preset

On 20,000 problems visited in turn the traces needed 1,000 steps, and a seed that
learned 3-digit sums without thinking went unchecked; docs/lab/26 has both measured.
How the toy differs: a real base is pretrained on web text, and its ability to reason
comes from scale, not from traces written for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toyds.core.model import GPT, GPTConfig, make_config
from toyds.tasks.base import WEIGHTINGS, level_weights
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import OPTIMIZERS


@dataclass
class BaseRecipe:
    preset: str = "small"  # model size (core/model.py's PRESETS), when no model config is given
    steps: int = 800  # optimiser steps
    batch_size: int = 64  # sequences per step
    lr: float = 3e-3  # peak learning rate
    problems: int = 6000  # distinct training problems in the corpus
    weighting: str = "harder"  # how the corpus visits the task's levels: "harder" (1:2:3) or "even"
    optimizer: str = "adamw"  # train/trainer.py's OPTIMIZERS (Muon also speeds up direct answers: docs/lab/26)
    block_size: int = 128  # the model's context (Countdown-lite needs 320)

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"BaseRecipe.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"BaseRecipe.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")


def pretrain_base(task, recipe: BaseRecipe, seed: int, device="cpu", config: GPTConfig | None = None,
                  desc: str = "pretrain base", step_callback=None) -> GPT:
    """A base of `config` (default: recipe.preset, dense) pretrained on the task's "base" corpus."""
    problems = task.sample_weighted(recipe.problems, "train", seed, level_weights(recipe.weighting, task))
    torch.manual_seed(seed)  # the initial weights follow the seed
    model = GPT(config or make_config(recipe.preset, block_size=recipe.block_size)).to(device)
    cfg = TrainConfig.recipe(recipe.steps, recipe.lr, recipe.batch_size, seed=seed, optimizer=recipe.optimizer)
    train_supervised(model, task.corpus(problems, "base", seed=seed), cfg, desc=desc, step_callback=step_callback)
    return model


@dataclass
class SearchRecipe:
    """A base for a search task (Countdown-lite: tasks/countdown.py), in two phases: mostly search
    traces first, to learn the working and the checks; then mostly guesses, so that, greedy, the
    base prefers to answer directly and RL has a search to select (chapter 7)."""

    preset: str = "tiny"  # model size (core/model.py's PRESETS)
    n_layer: int = 4  # blocks (the tiny preset's two are too few to check a candidate)
    block_size: int = 320  # the longest search trace must fit
    search_steps: int = 800  # phase 1 steps
    search_phase_share: float = 0.9  # share of search traces in phase 1
    mix_steps: int = 300  # phase 2 steps
    search_share: float = 0.35  # share of search traces in phase 2 (the rest are guesses)
    lr: float = 1e-2  # peak learning rate of each phase
    batch_size: int = 32  # sequences per step
    problems: int = 20000  # distinct training problems drawn for the corpus


def pretrain_search_base(task, recipe: SearchRecipe, seed: int, device="cpu", desc: str = "pretrain") -> GPT:
    """A base pretrained on task.search_corpus in recipe's two phases (see SearchRecipe)."""
    torch.manual_seed(seed)  # the initial weights follow the seed
    model = GPT(make_config(recipe.preset, block_size=recipe.block_size, n_layer=recipe.n_layer)).to(device)
    problems = task.sample(recipe.problems, "train", seed=seed)  # the pretraining split only
    for phase, (steps, share) in enumerate([(recipe.search_steps, recipe.search_phase_share),
                                            (recipe.mix_steps, recipe.search_share)], start=1):
        corpus = task.search_corpus(problems, share, seed=seed + phase)
        train_supervised(model, corpus, TrainConfig.recipe(steps, recipe.lr, recipe.batch_size, seed + phase),
                         desc=f"{desc} {task.name}, phase {phase} ({share:.0%} search)")
    return model
