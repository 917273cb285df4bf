"""Countdown-lite: a search task where checking a guess is easy and guessing is not.

The "aha moment" of DeepSeek-R1-Zero (R1 paper, section 2.2.4) is a model that
learns, from rule-based rewards alone, to check its own work and to go back when
the check fails. TinyZero and Mini-R1 showed it on the Countdown game with 3B
models on GPUs. This module is a version small enough for a CPU: three numbers from
1 to 9 and a one-digit target; combine all three, each once, with + - x.

    prompt      <bos>8,3,1 to 6:
    direct      <think>(8-3)+1</think><answer>(8-3)+1</answer><eos>          a guess, unchecked
    search      <think>6-1=5 8x3=24 no,8-3=5-5=0 ok</think><answer>(8-3)+1</answer><eos>

The candidates are the family (x op1 y) op2 z: (x, y, z) an arrangement of the
numbers with x >= y, op1 in + - x, op2 in + x, no negative results (at most 18).
A *search trace* works back from the target: a head per last number z undoes the
outer op ('6-1=5': with +1 last, x op1 y must make 5; '6:3=2' for x3 last), then
tries inner operations against that need, each worked and checked by subtracting
the need ('8-3=5-5=0 ok', '8+1=9-3=6 no'; a two-digit result is 'no' at once,
'8x3=24 no'), in random order, going back to the next try on "no", until "ok".
The heads come in random order too, or (fixed_heads, examples/07_aha.py's default)
in a fixed one, z as the prompt gives them and + before x: a model that follows that
order never repeats a head or skips one, as RL's policies did with a random order.
Why this shape (the runs are in notes_aha.md, kept in git history only:
`git show cc10490:notes_aha.md`): a plain comparison verdict ('5 vs 6 no') was learned far more slowly than arithmetic facts and ended
up guessed from the position in the search; one-digit needs make every check a
one-digit subtraction fact, which a tiny model does learn.
Difficulty is how *scarce* the solutions are: how many candidates hit the target
(1, 2, or 3 and more). The trace format does not fix it, so if a model spends more
tries where solutions are scarce, that is its search, not our template. (A random
search needs more tries when hits are scarce, so the base's own search traces
already do this; what RL can change is *whether* it searches, per problem.)

Two modules read completions of this task: toyds/countdown_rules.py scores the final
answer (the rule-based rewards GRPO is trained on), and toyds/countdown_behaviour.py
reads the thinking back into tries, verdicts and backtracks (the measures of
examples/07_aha.py).

How this toy differs from Countdown as TinyZero plays it: 3 one-digit numbers and
one-digit targets, not 3-4 numbers up to 100; no division in answers (':' appears
only in the heads, where it is exact); the trace family is one shape, (x op1 y) op2
z, though the checker accepts any expression over + - x and parentheses.
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass

OPS1 = ("+", "-", "x")  # the inner operation of a candidate
OPS2 = ("+", "x")  # the outer one
UNDO = {"+": "-", "x": ":"}  # working back from the target undoes the outer op (':' divides)
REDO = {v: k for k, v in UNDO.items()}
N_NUMBERS = 3
MAX_NUMBER = 9
MAX_TARGET = 9  # one-digit targets: every need is one digit, so every check is a one-digit fact
SPLITS = {"test": (0, 20), "rl": (20, 40), "pretrain": (40, 100)}  # shares of a stable hash, in percent
LEVELS = ("1", "2", "3+")  # difficulty: how many candidates hit the target


def apply(a: int, op: str, b: int) -> int:
    # the truth, computed with Python integers: never by evaluating text
    return a + b if op == "+" else a - b if op == "-" else a * b


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """One expression of the family: (x op1 y) op2 z."""

    x: int
    op1: str
    y: int
    op2: str
    z: int

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

        The check subtracts the need from the result, scratch-paper style (8-3=5, minus
        the need 5, is 0), and "ok" means exactly that the difference is 0. Needs are
        one digit (targets are), so every check is a one-digit subtraction fact, the
        kind a tiny model learns quickly; a result of two digits can never equal a
        one-digit need and gets "no" at once. Why not a plain comparison ('24 vs 5 no')?
        Its yes/no verdict was learned far more slowly than facts, because the verdict
        is cheap to guess from how far into the search the try comes (notes in the README).
        """
        need = self.need(target)
        if self.inner > 9:
            return f"{self.x}{self.op1}{self.y}={self.inner} no"
        return f"{self.x}{self.op1}{self.y}={self.inner}-{need}={self.inner - need} {'ok' if self.inner == need else 'no'}"


def family(numbers: tuple[int, ...]) -> list[Candidate]:
    """Every candidate (x op1 y) op2 z over the numbers, once each, in a fixed order.

    x >= y (a commutative op is written larger first; a subtraction stays >= 0) and
    the result is >= 0. Equal numbers give fewer distinct candidates.
    """
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
    """'test' (20%, held out), 'rl' (20%, RL prompts the base never saw) or 'pretrain' (60%).

    A stable hash of the problem's text decides, whatever seed or size a run asks for.
    """
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
    """Work back from the target, try the inner operations, stop at the first "ok".

    Groups in random order, one per last number z (and outer op): the head says what
    the other two must make, then the inner operations are tried in random order:

        6-1=5 8+3=11 no,8x3=24 no,8-3=5-5=0 ok

    A head that cannot work is skipped: + z with z above the target (it can only
    overshoot), x z with z not dividing the target. With fixed_heads the heads come in
    the canonical order (z as the prompt gives them, + before x) and only the tries are
    shuffled: a search that cannot repeat a head or skip one.
    Returns the trace and the candidate that hit.
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
    trace, hit = search_trace(p, rng, shuffle, fixed_heads)
    return f"<think>{trace}</think><answer>{hit.expression()}</answer><eos>"


def direct_completion(p: Countdown, rng: random.Random) -> str:
    """A solution stated with no working and no check: the one-pass answer."""
    e = rng.choice(p.solutions()).expression()
    return f"<think>{e}</think><answer>{e}</answer><eos>"


def check_drill(p: Countdown, rng: random.Random, shuffle: bool = True, fixed_heads: bool = False) -> tuple[str, str]:
    """A search trace cut just before one verdict: (prompt up to '8-3=5', completion ' ok').

    Half the drills stop at the hit ("ok"), half at a miss ("no"), so the verdict
    cannot be guessed from how far into the search it comes; only comparing the
    try with the need gets it right. The loss falls on the verdict alone (the
    prompt is masked): a curriculum for the check, in the same text as the traces.
    """
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
