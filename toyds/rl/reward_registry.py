"""Rewards by name, with weights: the `--reward accuracy:1,format:0.5` of every GRPO run.

GRPO adds weighted rule-based rewards (TRL's reward_funcs and reward_weights):

    r = sum_f w_f r_f        R1:  r = 1 x accuracy + 0.5 x format

A name means the task's own reward first (Task.rewards(): "accuracy" is arithmetic's
integer check on arithmetic, the expression checker on Countdown-lite), then one of
the task-independent ones here:

    format   R1's format reward, <think>T</think><answer>A</answer> (rl/rewards.py)
    length   minus the completion's length in tokens: with weight c, a price of c per
             token, so a check must earn the tokens it costs (examples/07_aha.py)
    alp      ALP's adaptive length penalty (arXiv 2506.05256): minus the length times the
             group's solve rate, max(p, 1/G), so a prompt most samples solve pays for every
             token and one few solve pays almost nothing (built from the task's accuracy)

`R1` is R1-Zero's pair, written once. A new reward is a `fn(completions, **columns)
-> [float]` and one `register_reward` call; --reward then takes its name. Bad
names and weights are named before any work: the syntax when the flag is read, the
names once the task is known (`resolve`).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import format_reward_batch

R1 = "accuracy:1,format:0.5"  # R1-Zero's rewards: accuracy + 0.5 x format (section 2.2.2; the 0.5 is ours)


def length_penalty(completions, **kwargs) -> list[float]:
    """-(tokens in each completion): weighted by c, a price of c per token."""
    tok = Tokenizer()
    return [-float(len(tok.encode(c))) if isinstance(c, str) else 0.0 for c in completions]


def adaptive_length_penalty(accuracy_fn: Callable) -> Callable:
    """ALP: -(tokens) x max(p_solved, 1/G), with p_solved the share of the prompt's group that
    `accuracy_fn` scores right. The group is every row with the same prompt (GRPO samples a
    prompt's G completions together, and TRL passes `prompts` to every reward function)."""

    def alp(completions, prompts, **columns) -> list[float]:
        right = [float(r or 0.0) for r in accuracy_fn(completions=completions, prompts=prompts, **columns)]
        solved: dict[str, list[float]] = {}
        for prompt, r in zip(prompts, right):
            solved.setdefault(prompt, []).append(r)
        tokens = length_penalty(completions)  # -(tokens)
        return [t * max(sum(solved[q]) / len(solved[q]), 1 / len(solved[q])) for t, q in zip(tokens, prompts)]

    return alp


REWARDS: dict[str, Callable] = {"format": format_reward_batch, "length": length_penalty}
TASK_REWARDS: dict[str, Callable] = {"alp": lambda task: adaptive_length_penalty(task.rewards()["accuracy"])}


def register_reward(name: str, fn: Callable) -> Callable:
    """Make `fn(completions, **columns) -> [float]` available to --reward as `name`."""
    if not (isinstance(name, str) and name.isidentifier()) or not callable(fn):
        raise ValueError(f"register_reward takes a name like 'my_reward' and a function, got {name!r}, {fn!r}")
    REWARDS[name] = fn
    return fn


def parse_spec(text: str) -> list[tuple[str, float]]:
    """'accuracy:1,format:0.5' -> [("accuracy", 1.0), ("format", 0.5)]; a ValueError naming the bad part."""
    out = []
    for part in str(text).split(","):
        name, sep, weight = part.strip().partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--reward {text!r}: write name:weight pairs, comma-separated, e.g. {R1!r} "
                             f"(the part {part.strip()!r} is not one)")
        try:
            w = float(weight)
        except ValueError:
            w = math.nan
        if not math.isfinite(w):
            raise ValueError(f"--reward {text!r}: the weight of {name.strip()!r} must be a finite number, got {weight!r}")
        out.append((name.strip(), w))
    if len({n for n, _ in out}) != len(out):
        raise ValueError(f"--reward {text!r} names a reward twice")
    return out


def available(task) -> dict[str, Callable]:
    """Every reward --reward can name for `task`: the task's own first, then REWARDS and those
    built from the task's accuracy (TASK_REWARDS)."""
    return {**REWARDS, **{name: make(task) for name, make in TASK_REWARDS.items()}, **task.rewards()}


def resolve(spec: str, task) -> tuple[list[Callable], list[float]]:
    """(reward functions, weights) for train_grpo's reward_fns and reward_weights."""
    pairs, known = parse_spec(spec), available(task)
    for name, _ in pairs:
        if name not in known:
            raise ValueError(f"--reward: unknown reward {name!r} for task {task.name!r}; "
                             f"its rewards are {', '.join(sorted(known))}")
    return [known[n] for n, _ in pairs], [w for _, w in pairs]


def add_reward_arg(parser: argparse.ArgumentParser, default: str = R1) -> None:
    """--reward name:weight,... (its syntax checked when read; the names by `resolve`, once the task is known)."""

    def spec(text):
        try:
            parse_spec(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    parser.add_argument("--reward", type=spec, default=default,
                        help=f"GRPO's rewards as name:weight pairs; names: the task's (accuracy) and "
                             f"{', '.join(sorted({**REWARDS, **TASK_REWARDS}))}")
