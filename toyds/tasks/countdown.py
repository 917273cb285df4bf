"""Countdown-lite: a search task where checking a guess is easy and guessing is not.

R1-Zero's "aha moment" (R1 paper, section 2.2.4) is a model that learns, from
rule-based rewards alone, to check its own work and go back when the check fails;
TinyZero showed it on Countdown with 3B models. This version fits a CPU: three
numbers 1-9 and a one-digit target; combine all three, each once, with + - x.

    prompt      <bos>8,3,1 to 6:
    direct      <think>(8-3)+1</think><answer>(8-3)+1</answer><eos>          a guess, unchecked
    search      <think>6-1=5 8x3=24 no,8-3=5-5=0 ok</think><answer>(8-3)+1</answer><eos>

Candidates are (x op1 y) op2 z over the numbers (x >= y, op1 in + - x, op2 in + x,
never negative). A *search trace* works back from the target: a head per last number
z undoes the outer op ('6-1=5': x op1 y must make 5), then tries inner operations,
each checked by subtracting the need ('8-3=5-5=0 ok'), until "ok". Difficulty is how
*scarce* solutions are (1, 2, or 3+ candidates hit): a search that stops at its first
hit tries more where they are scarce; what RL can change is *whether* it searches.
Reading a completion back (its reward, its tries and checks) is
tasks/countdown_reading.py; `CountdownLite` is the task ("countdown").

How this differs from TinyZero's Countdown: 3 one-digit numbers and one-digit
targets, not 3-4 numbers up to 100; no division in answers (':' only in the heads,
where it is exact); the checker accepts any expression over + - x and parentheses.
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass
from typing import ClassVar

from toyds.tasks import countdown_reading as reading
from toyds.tasks.base import Task
from toyds.tasks.countdown_reading import LEVELS, UNDO, apply

OPS1 = ("+", "-", "x")  # the inner operation of a candidate
OPS2 = ("+", "x")  # the outer one
N_NUMBERS = 3
MAX_NUMBER = 9
MAX_TARGET = 9  # one-digit targets: every need is one digit, so every check is a one-digit fact
SPLITS = {"test": (0, 20), "rl": (20, 40), "pretrain": (40, 100)}  # shares of a stable hash, in percent


# ---------------------------------------------------------------- candidates

@dataclass(frozen=True)
class Candidate:
    """One expression of the family: (x op1 y) op2 z."""

    x: int  # the larger of the inner pair
    op1: str  # the inner operation, + - x
    y: int
    op2: str  # the outer operation, + x
    z: int  # the number applied last

    @property
    def inner(self) -> int:
        return apply(self.x, self.op1, self.y)

    @property
    def value(self) -> int:
        return apply(self.inner, self.op2, self.z)

    def expression(self) -> str:
        return f"({self.x}{self.op1}{self.y}){self.op2}{self.z}"

    def need(self, target: int) -> int | None:
        """What x op1 y must make for this candidate to hit the target (None if nothing can)."""
        if self.op2 == "+":
            return target - self.z if target >= self.z else None
        return target // self.z if target % self.z == 0 else None

    def head(self, target: int) -> str:
        """The step back from the target that opens a group of tries: '6-1=5' (then + 1 is
        added last, so x op1 y must make 5) or '8:2=4' (then x 2 is last, so it must make 4)."""
        return f"{target}{UNDO[self.op2]}{self.z}={self.need(target)}"

    def check(self, target: int) -> str:
        """One try, worked and checked against the need: '8-3=5-5=0 ok', '3+1=4-5=-1 no', '8x3=24 no'.

        "ok" means the result minus the need is 0: a one-digit subtraction fact, which a
        tiny model learns quickly (a plain comparison, '24 vs 5 no', was learned far more
        slowly: docs/lab/07_aha.md). A two-digit result never equals a one-digit need.
        """
        need = self.need(target)
        if self.inner > 9:
            return f"{self.x}{self.op1}{self.y}={self.inner} no"
        return f"{self.x}{self.op1}{self.y}={self.inner}-{need}={self.inner - need} {'ok' if self.inner == need else 'no'}"


def family(numbers: tuple[int, ...]) -> list[Candidate]:
    """Every candidate (x op1 y) op2 z over the numbers, once each, in a fixed order: x >= y
    (larger first; a subtraction stays >= 0), result >= 0. Equal numbers give fewer."""
    out: dict[Candidate, None] = {}
    for x, y, z in itertools.permutations(numbers):
        if x < y:
            continue
        for op1 in OPS1:
            for op2 in OPS2:
                c = Candidate(x, op1, y, op2, z)
                if c.value >= 0:
                    out[c] = None
    return list(out)


# ------------------------------------------------------------------ problems


@dataclass(frozen=True)
class Countdown:
    numbers: tuple[int, ...]  # the given numbers, in prompt order
    target: int

    @property
    def text(self) -> str:
        return f"{','.join(map(str, self.numbers))} to {self.target}"

    def prompt(self) -> str:
        return f"<bos>{self.text}:"

    def solutions(self) -> list[Candidate]:
        return [c for c in family(self.numbers) if c.value == self.target]

    @property
    def difficulty(self) -> str:
        """'1', '2' or '3+': how many candidates of the family hit the target."""
        k = len(self.solutions())
        return LEVELS[min(k, len(LEVELS)) - 1] if k else "0"

    def columns(self) -> dict:
        """The dataset columns a TRL-style reward receives for this problem."""
        return {"numbers": self.numbers, "target": self.target}


def split_of(p: Countdown) -> str:
    """'test' (20%, held out), 'rl' (20%, RL prompts the base never saw) or 'pretrain' (60%),
    by a stable hash of the problem's text, whatever seed or size a run asks for."""
    bucket = zlib.crc32(p.text.encode()) % 100
    return next(name for name, (lo, hi) in SPLITS.items() if lo <= bucket < hi)


def random_problem(rng: random.Random, max_number: int = MAX_NUMBER, max_target: int = MAX_TARGET) -> Countdown:
    """Three numbers 1..max_number (repeats allowed); the target uniform over the values
    1..max_target the family reaches, so every problem has a solution."""
    while True:
        numbers = tuple(rng.randint(1, max_number) for _ in range(N_NUMBERS))
        values = sorted({c.value for c in family(numbers) if 1 <= c.value <= max_target})
        if values:
            return Countdown(numbers, rng.choice(values))


def sample_problems(n: int, split: str = "pretrain", seed: int = 0, levels=LEVELS, unique: bool = False,
                    max_number: int = MAX_NUMBER, max_target: int = MAX_TARGET) -> list[Countdown]:
    """n problems from one split (see split_of), difficulty levels visited in turn (balanced)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
    rng = random.Random(f"countdown-{seed}-{split}")
    out, seen, misses = [], set(), 0
    while len(out) < n:
        want = levels[len(out) % len(levels)]
        p = random_problem(rng, max_number, max_target)
        if split_of(p) != split or p.difficulty != want or (unique and p in seen):
            misses += 1
            if misses > 200 * (n + 100):
                raise ValueError(f"could not find {n} distinct {split} problems at levels {levels}")
            continue
        seen.add(p)
        out.append(p)
    return out


# ------------------------------------------------------------- completions


def search_trace(p: Countdown, rng: random.Random, shuffle: bool = True,
                 fixed_heads: bool = False) -> tuple[str, Candidate]:
    """Work back from the target, try the inner operations, stop at the first "ok": the trace
    and the candidate that hit, e.g. '6-1=5 8+3=11 no,8x3=24 no,8-3=5-5=0 ok'.

    A head that cannot work is skipped (+ z with z above the target, x z with z not
    dividing it). Heads and tries come in random order, or with fixed_heads the heads
    in the canonical order (z as the prompt gives them, + before x) and only the tries
    shuffled; shuffle=False fixes both.
    """
    groups: dict[tuple[str, int], list[Candidate]] = {}
    for c in family(p.numbers):
        if c.need(p.target) is not None:
            groups.setdefault((c.op2, c.z), []).append(c)
    order = sorted(groups, key=lambda k: (p.numbers.index(k[1]), OPS2.index(k[0])))
    if shuffle and not fixed_heads:
        rng.shuffle(order)
    parts = []
    for key in order:
        tries = sorted(groups[key], key=lambda c: OPS1.index(c.op1))
        if shuffle:
            rng.shuffle(tries)
        done = []
        for c in tries:
            done.append(c.check(p.target))
            if c.value == p.target:
                parts.append(f"{c.head(p.target)} {','.join(done)}")
                return ";".join(parts), c
        parts.append(f"{tries[0].head(p.target)} {','.join(done)}")
    raise ValueError(f"{p.text} has no solution in the family")  # sample_problems never makes one


def search_completion(p: Countdown, rng: random.Random, shuffle: bool = True, fixed_heads: bool = False) -> str:
    trace, hit = search_trace(p, rng, shuffle, fixed_heads)  # in R1's format
    return f"<think>{trace}</think><answer>{hit.expression()}</answer><eos>"


def direct_completion(p: Countdown, rng: random.Random) -> str:
    e = rng.choice(p.solutions()).expression()  # a solution with no working and no check: the one-pass answer
    return f"<think>{e}</think><answer>{e}</answer><eos>"


def check_drill(p: Countdown, rng: random.Random, shuffle: bool = True, fixed_heads: bool = False) -> tuple[str, str]:
    """A search trace cut just before one verdict, (prompt up to '8-3=5', completion ' ok'): a curriculum
    for the check. Half stop at the hit, half at a miss, so only comparing try and need gets it right."""
    trace, _ = search_trace(p, rng, shuffle, fixed_heads)
    cuts = [i for i in range(len(trace)) if trace.startswith((" ok", " no"), i)]
    misses = [i for i in cuts if trace.startswith(" no", i)]
    i = cuts[-1] if not misses or rng.random() < 0.5 else rng.choice(misses)
    return f"{p.prompt()}<think>{trace[:i]}", trace[i : i + 3]


def build_corpus(problems: list[Countdown], search_share: float = 0.4, drill_share: float = 0.0,
                 seed: int = 0, shuffle: bool = True, fixed_heads: bool = False) -> list[tuple[str, str]]:
    """(prompt, completion) pairs, one per problem: a check drill with probability
    drill_share, else a search trace with probability search_share, else a direct answer."""
    for name, v in (("search_share", search_share), ("drill_share", drill_share)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    rng = random.Random(seed)
    out = []
    for p in problems:
        if rng.random() < drill_share:
            out.append(check_drill(p, rng, shuffle, fixed_heads))
        elif rng.random() < search_share:
            out.append((p.prompt(), search_completion(p, rng, shuffle, fixed_heads)))
        else:
            out.append((p.prompt(), direct_completion(p, rng)))
    return out


# ------------------------------------------------------------------- the task


@dataclass
class CountdownLite(Task):
    """Countdown-lite as a task: search traces that check themselves, scored by the checker."""

    name: ClassVar[str] = "countdown"
    levels: ClassVar[tuple[str, ...]] = LEVELS
    level_unit: ClassVar[str] = " solved"  # how many candidates solve it
    fixed_heads: bool = True  # search traces open their heads in the canonical order (only tries shuffled)
    search_share: float = 0.35  # share of search traces (the rest are guesses) in the "base" corpus
    drill_share: float = 0.0  # share of check drills (a trace cut before one verdict) in every corpus

    def sample(self, n, split="train", seed=0, unique=False):
        self.check(split=split)  # "train" is the pretraining split; "rl" and "test" are never pretrained on
        return sample_problems(n, "pretrain" if split == "train" else split, seed, unique=unique)

    def search_corpus(self, problems, search_share: float, seed: int = 0) -> list[tuple[str, str]]:
        """This share of search traces, the rest guesses (examples/07's curriculum)."""
        return build_corpus(problems, search_share, self.drill_share, seed, fixed_heads=self.fixed_heads)

    def corpus(self, problems, style="base", seed=0):
        self.check(style=style)
        return self.search_corpus(problems, {"think": 1.0, "direct": 0.0, "base": self.search_share}[style], seed)

    def worked(self, problem) -> str:
        return search_completion(problem, random.Random(0), fixed_heads=self.fixed_heads)

    def accuracy(self, completion, problem) -> float:
        return reading.accuracy(completion, problem.numbers, problem.target)

    def level(self, problem) -> str:
        return problem.difficulty

    def rewards(self) -> dict:
        return {"accuracy": reading.accuracy_batch}

    def measure(self, problems, completions) -> dict:
        return reading.measure(problems, completions)

    def parse(self, text: str) -> Countdown:
        """'8,3,1 to 6' -> Countdown((8, 3, 1), 6)."""
        nums, sep, target = text.strip().rstrip(":").partition(" to ")
        parts = [n.strip() for n in nums.split(",")] + [target.strip()]
        if sep and len(parts) == N_NUMBERS + 1 and all(len(n) == 1 and n in "123456789" for n in parts):
            return Countdown(tuple(int(n) for n in parts[:-1]), int(parts[-1]))
        raise ValueError(f"cannot read {text!r} as a Countdown-lite problem; write {N_NUMBERS} numbers from 1 to "
                         f"{MAX_NUMBER} and a one-digit target, e.g. '8,3,1 to 6'")
