"""Countdown-lite with an easy level: two numbers whose sum is the target, which a glance solves.

R1-Zero learned to spend more thinking on harder problems (R1 paper, section 2.2.4) from
r = accuracy + 0.5 x format alone. Within Countdown-lite a one-pass guess is about as
unreliable where many candidates solve the problem as where one does
(docs/lab/29_where_it_pays.md), so no price on tokens can teach "search only where it
is hard" there: the search pays everywhere.
This task adds a level where a guess is as good as a search, the obvious sum:

    prompt      <bos>8,7 to 15:
    guess       <think>8+7</think><answer>8+7</answer><eos>
    search      <think>8-7=1-15=-14 no,8+7=15-15=0 ok</think><answer>8+7</answer><eos>

The search tries x+y, x-y, xxy (larger number first) in a random order, each checked
against the target as Countdown-lite's tries are, and stops at the first "ok"; it has
no head, since there is no outer operation to undo. Problems come in four levels,
visited in turn: "sum" (two numbers), then Countdown-lite's "1", "2", "3+" (how many
candidates solve a three-number problem). The 81 sums are split by Countdown-lite's
stable hash with a larger held-out share (PAIR_SPLITS: 34 pretraining, 12 RL, 35 held
out). Chapter 7 runs it with `--task countdown_easy`: does RL keep the search where it
is hard (one candidate solves it) and drop it where a glance suffices (the sums)?
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import ClassVar

from toyds.tasks import countdown_reading as reading
from toyds.tasks.countdown import MAX_NUMBER, OPS1, Countdown, CountdownLite
from toyds.tasks.countdown_reading import LEVELS, apply

EASY = "sum"  # the level name of a two-number problem
DIGITS, TARGETS = {str(n) for n in range(1, 10)}, {str(t) for t in range(1, 19)}  # what parse reads
PAIR_SPLITS = {"test": (0, 40), "rl": (40, 60), "pretrain": (60, 100)}  # shares of the hash, in percent


@dataclass(frozen=True)
class Pair(Countdown):
    """A two-number problem: combine both numbers, each once, with one of + - x (the target is their sum).
    Its text, prompt and reward columns are Countdown-lite's; its candidates and level are its own."""

    def tries(self) -> list[tuple[str, int]]:
        """(expression, value) of x+y, x-y, xxy with x the larger number (a difference stays >= 0)."""
        x, y = max(self.numbers), min(self.numbers)
        return [(f"{x}{op}{y}", apply(x, op, y)) for op in OPS1]

    def solutions(self) -> list[str]:
        return [e for e, v in self.tries() if v == self.target]

    @property
    def difficulty(self) -> str:
        return EASY


def all_pairs(split: str) -> list[Pair]:
    """Every sum of two numbers 1-9 in a split (the stable hash of its text, PAIR_SPLITS), in a fixed order."""
    if split not in PAIR_SPLITS:
        raise ValueError(f"split must be one of {tuple(PAIR_SPLITS)}, got {split!r}")
    lo, hi = PAIR_SPLITS[split]
    pairs = [Pair((a, b), a + b) for a in range(1, MAX_NUMBER + 1) for b in range(1, MAX_NUMBER + 1)]
    return [p for p in pairs if lo <= zlib.crc32(p.text.encode()) % 100 < hi]


def pair_search(p: Pair, rng: random.Random) -> str:
    """'8-7=1-15=-14 no,8+7=15-15=0 ok': the tries in a random order, each checked, up to the first hit."""
    tries, done = p.tries(), []
    rng.shuffle(tries)
    for e, v in tries:
        if len(str(v)) > len(str(p.target)):  # more digits than the target: it cannot be equal
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
    """Countdown-lite plus two-number sums: one level a guess gets right, three it does not."""

    name: ClassVar[str] = "countdown_easy"
    levels: ClassVar[tuple[str, ...]] = (EASY, *LEVELS)
    level_unit: ClassVar[str] = ""  # a two-number "sum", or how many candidates solve it
    where_levels: ClassVar[tuple[str, str]] = ("1", EASY)  # where the search should stay, where it should go

    def sample(self, n, split="train", seed=0, unique=False):
        """n problems, the levels in turn: every fourth a two-number sum, the rest Countdown-lite's."""
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
        """'8,7 to 15' -> Pair((8, 7), 15); three numbers as Countdown-lite reads them."""
        nums, sep, target = text.strip().rstrip(":").partition(" to ")
        parts = [n.strip() for n in nums.split(",")]
        if len(parts) == 3:
            return super().parse(text)
        if sep and len(parts) == 2 and all(n in DIGITS for n in parts) and target.strip() in TARGETS:
            return Pair((int(parts[0]), int(parts[1])), int(target))
        raise ValueError(f"cannot read {text!r} as a problem of {self.name}; write two numbers from 1 to {MAX_NUMBER} "
                         f"and a target up to 18 (e.g. '8,7 to 15'), or three as Countdown-lite ('8,3,1 to 6')")

