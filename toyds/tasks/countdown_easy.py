"""Countdown-lite with an easy level: two numbers and one operation, which a guess gets right.

Within Countdown-lite a one-pass guess is about as unreliable where many candidates
solve the problem as where one does (docs/lab/29_where_it_pays.md), so no price on
tokens can teach "search only where it is hard" there: the search pays everywhere.
This task adds a level where a glance suffices, two numbers and one operation:

    prompt      <bos>8,3 to 5:
    guess       <think>8-3</think><answer>8-3</answer><eos>
    search      <think>8+3=11 no,8-3=5-5=0 ok</think><answer>8-3</answer><eos>

The search tries x+y, x-y, xxy (larger number first) in a random order, each checked
against the target as Countdown-lite's tries are, and stops at the first "ok"; it has
no head, since there is no outer operation to undo. Problems come in four levels,
visited in turn: "two" (two numbers), then Countdown-lite's "1", "2", "3+" (how many
candidates solve a three-number problem). The splits are Countdown-lite's stable
hash, so a held-out two-number problem was never pretrained on (130 problems in all:
73 pretraining, 27 RL, 30 held out). Chapter 7 runs it with `--task countdown_easy`:
does a price that knows the difficulty (ALP) keep the search where it is hard and
drop it where it is easy? ("where_levels": the hard level, then the easy one.)
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import ClassVar

from toyds.tasks import countdown_reading as reading
from toyds.tasks.countdown import MAX_NUMBER, MAX_TARGET, OPS1, SPLITS, CountdownLite
from toyds.tasks.countdown_reading import LEVELS, apply

EASY = "two"  # the level name of a two-number problem


@dataclass(frozen=True)
class Pair:
    """A two-number problem: combine both numbers, each once, with one of + - x."""

    numbers: tuple[int, int]  # in prompt order
    target: int

    @property
    def text(self) -> str:
        return f"{self.numbers[0]},{self.numbers[1]} to {self.target}"

    def prompt(self) -> str:
        return f"<bos>{self.text}:"

    def tries(self) -> list[tuple[str, int]]:
        """(expression, value) of x+y, x-y, xxy with x the larger number (a difference stays >= 0)."""
        x, y = max(self.numbers), min(self.numbers)
        return [(f"{x}{op}{y}", apply(x, op, y)) for op in OPS1]

    def solutions(self) -> list[str]:
        return [e for e, v in self.tries() if v == self.target]

    @property
    def difficulty(self) -> str:
        return EASY

    def columns(self) -> dict:
        return {"numbers": self.numbers, "target": self.target}


def all_pairs(split: str) -> list[Pair]:
    """Every two-number problem of a split (Countdown-lite's hash on the text), in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]
    out = []
    for a in range(1, MAX_NUMBER + 1):
        for b in range(1, MAX_NUMBER + 1):
            for t in sorted({v for _, v in Pair((a, b), 0).tries() if 1 <= v <= MAX_TARGET}):
                p = Pair((a, b), t)
                if lo <= zlib.crc32(p.text.encode()) % 100 < hi:
                    out.append(p)
    return out


def pair_search(p: Pair, rng: random.Random) -> str:
    """'8+3=11 no,8-3=5-5=0 ok': the tries in a random order, each checked, up to the first hit."""
    tries, done = p.tries(), []
    rng.shuffle(tries)
    for e, v in tries:
        if v > 9:  # a two-digit result never equals a one-digit target
            done.append(f"{e}={v} no")
            continue
        done.append(f"{e}={v}-{p.target}={v - p.target} {'ok' if v == p.target else 'no'}")
        if v == p.target:
            return f"<think>{','.join(done)}</think><answer>{e}</answer><eos>"
    raise ValueError(f"{p.text} has no solution")  # all_pairs never makes one


def pair_guess(p: Pair, rng: random.Random) -> str:
    e = rng.choice(p.solutions())
    return f"<think>{e}</think><answer>{e}</answer><eos>"


@dataclass
class CountdownEasy(CountdownLite):
    """Countdown-lite plus two-number problems: one level easy to guess, three that are not."""

    name: ClassVar[str] = "countdown_easy"
    levels: ClassVar[tuple[str, ...]] = (EASY, *LEVELS)
    level_unit: ClassVar[str] = ""  # "two" numbers, or how many candidates solve it
    where_levels: ClassVar[tuple[str, str]] = ("1", EASY)  # where the search should stay, where it should go

    def sample(self, n, split="train", seed=0, unique=False):
        """n problems, the levels in turn: every fourth a two-number problem, the rest Countdown-lite's."""
        self.check(split=split)
        n_pairs = len(range(0, n, len(self.levels)))
        pool = all_pairs("pretrain" if split == "train" else split)
        rng = random.Random(f"countdown-easy-{seed}-{split}")
        if unique and n_pairs > len(pool):
            raise ValueError(f"asked for {n_pairs} distinct two-number {split} problems; the split holds {len(pool)}")
        pairs = rng.sample(pool, n_pairs) if unique else [rng.choice(pool) for _ in range(n_pairs)]
        rest = iter(super().sample(n - n_pairs, split, seed, unique))
        return [pairs[i // len(self.levels)] if i % len(self.levels) == 0 else next(rest) for i in range(n)]

    def search_corpus(self, problems, search_share: float, seed: int = 0) -> list[tuple[str, str]]:
        """Countdown-lite's corpus for its problems; for two-number ones a search with probability
        search_share, else a guess."""
        rng = random.Random(f"pairs-{seed}")
        rest = iter(super().search_corpus([p for p in problems if not isinstance(p, Pair)], search_share, seed))
        return [next(rest) if not isinstance(p, Pair) else
                (p.prompt(), pair_search(p, rng) if rng.random() < search_share else pair_guess(p, rng))
                for p in problems]

    def worked(self, problem) -> str:
        return pair_search(problem, random.Random(0)) if isinstance(problem, Pair) else super().worked(problem)

    def measure(self, problems, completions) -> dict:
        return reading.measure(problems, completions, self.levels)

    def parse(self, text: str):
        """'8,3 to 5' -> Pair((8, 3), 5); three numbers as Countdown-lite reads them."""
        nums, sep, target = text.strip().rstrip(":").partition(" to ")
        parts = [n.strip() for n in nums.split(",")] + [target.strip()]
        if sep and len(parts) == 3 and all(len(n) == 1 and n in "123456789" for n in parts):
            return Pair((int(parts[0]), int(parts[1])), int(parts[2]))
        if len(parts) == 4:
            return super().parse(text)
        raise ValueError(f"cannot read {text!r} as a problem of {self.name}; write two or three numbers from 1 "
                         f"to {MAX_NUMBER} and a one-digit target, e.g. '8,3 to 5' or '8,3,1 to 6'")

