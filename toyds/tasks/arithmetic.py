"""Arithmetic problems with exact answers, held-out by hash, and the task that wraps them.

Every toyds experiment from chapter 0 to 5 runs on problems like `347+589`, because
their answers can be checked exactly (the accuracy reward of DeepSeek-R1, section
2.2.2, needs a verifiable answer) and a tiny model can learn them on a CPU in a minute.

A problem's difficulty is its number of digits d (1-4). `+` and `-` take two
d-digit operands (subtraction keeps a >= b, so answers are never negative); `x`
multiplies a d-digit number by one digit from 2 to 9, the "small operand". The
worked traces and the base-model corpora are tasks/arithmetic_traces.py's:

    347+589=   <think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer><eos>

Train and held-out problems never overlap: a problem is held out iff a stable hash
of its text falls in a fixed 20% bucket, whatever seed or size a run asks for.
The task (`Arithmetic`, "arithmetic" in tasks/registry.py) takes the levels and
operations as --digits 1,2,3 --ops +,-,x, the one syntax of the CLI and every example.
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass
from typing import ClassVar

from toyds.core.tokenizer import BOS
from toyds.rl.rewards import accuracy_reward, accuracy_reward_batch, extract_answer
from toyds.tasks.arithmetic_traces import build_corpus, think_completion
from toyds.tasks.base import Task

OPS = ("+", "-", "x")
MAX_OPERAND_DIGITS = 4  # the hardest problems: 4-digit operands
HELDOUT_PERCENT = 20  # share of every (op, digits) cell that is held out, by hash


@dataclass(frozen=True)
class Problem:
    a: int
    op: str  # "+", "-" or "x"
    b: int
    digits: int  # the difficulty: digits of the first operand

    @property
    def answer(self) -> int:
        # the truth, computed with Python integers (never by evaluating text)
        return {"+": self.a + self.b, "-": self.a - self.b, "x": self.a * self.b}[self.op]

    @property
    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    def prompt(self) -> str:
        return f"{BOS}{self.text}="

    def columns(self) -> dict:
        """What reward functions receive about this problem (as TRL passes dataset columns)."""
        return {"answer": self.answer}


def is_heldout(p: Problem) -> bool:
    """True for the ~20% of problems reserved for evaluation (stable across runs)."""
    return zlib.crc32(p.text.encode()) % 100 < HELDOUT_PERCENT


def _check_request(digits, ops) -> None:
    for d in digits:
        if not (isinstance(d, int) and 1 <= d <= MAX_OPERAND_DIGITS):
            raise ValueError(f"digits must be integers in 1..{MAX_OPERAND_DIGITS}, got {d!r}")
    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}; valid operations are {OPS}")
    if not digits or not ops:
        raise ValueError(f"need at least one digit count and one operation, got {digits!r}, {ops!r}")


def parse_digits(text: str) -> tuple[int, ...]:
    """'1,2,3' -> (1, 2, 3): the one command-line syntax for difficulty levels (the CLI and every example)."""
    parts = [t.strip() for t in str(text).split(",")]
    if not all(p.isascii() and p.isdigit() and 1 <= int(p) <= MAX_OPERAND_DIGITS for p in parts):
        raise ValueError(f"--digits must be comma-separated digit counts from 1 to {MAX_OPERAND_DIGITS}, got {text!r}")
    digits = tuple(int(p) for p in parts)
    if len(set(digits)) != len(digits):
        raise ValueError(f"--digits {text!r} repeats a digit count")
    return digits


def parse_ops(text: str) -> tuple[str, ...]:
    """'+,-,x' -> ('+', '-', 'x'): the one command-line syntax for operations."""
    ops = tuple(t.strip() for t in str(text).split(","))
    if any(op not in OPS for op in ops):
        raise ValueError(f"--ops must be comma-separated operations from {' '.join(OPS)}, got {text!r}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"--ops {text!r} repeats an operation")
    return ops


def random_problem(rng: random.Random, digits: int, op: str) -> Problem:
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    a = rng.randint(lo, hi)
    if op == "x":
        b = rng.randint(2, 9)
    else:
        b = rng.randint(lo, hi)
        if op == "-" and b > a:
            a, b = b, a
    return Problem(a, op, b, digits)


def cell_size(digits: int, op: str) -> int:
    """How many distinct problems a (digits, op) cell holds, both splits together."""
    m = 10 if digits == 1 else 9 * 10 ** (digits - 1)  # d-digit numbers (0-9 for one digit)
    return {"+": m * m, "-": m * (m + 1) // 2, "x": m * 8}[op]  # "-" keeps a >= b; "x" by 2..9


@functools.lru_cache(maxsize=None)
def split_size(digits: int, op: str, heldout: bool) -> int:
    """How many distinct problems of a cell fall in one split, by listing them all (small cells only)."""
    lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    count = 0
    for a in range(lo, hi + 1):
        for b in range(2, 10) if op == "x" else range(lo, a + 1) if op == "-" else range(lo, hi + 1):
            count += is_heldout(Problem(a, op, b, digits)) == heldout
    return count


def _supply(cell: tuple[int, str], heldout: bool, need: int) -> int:
    """min(need, distinct problems of `cell` in the split), without listing a big cell."""
    # a split holds about 20% (test) or 80% (train) of every cell, so a need below a tenth
    # of the cell is always met; only then is the cell worth listing (4-digit + holds 81M)
    if need * 10 < cell_size(*cell):
        return need
    return min(need, split_size(*cell, heldout))


def sample_problems(
    n: int, digits=(1, 2, 3), ops=("+",), split: str = "train", seed: int = 0, unique: bool = False,
    allow_fewer: bool = False,
) -> list[Problem]:
    """n problems, difficulties and operations cycled evenly, from one split.

    split="train" never returns a held-out problem and split="test" only returns
    held-out ones. unique=True returns distinct problems (for evaluation). Some
    cells are small: 1-digit addition has only 21 held-out problems. Asking a cell
    for more distinct problems than it holds raises a ValueError, unless
    allow_fewer=True: then a cell that runs out gives every problem it has and the
    other cells make up the rest (an evaluation set of "100 per digit count" then
    holds all 21 one-digit sums).
    """
    digits, ops = tuple(digits), tuple(ops)
    _check_request(digits, ops)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    want_heldout = split == "test"
    cells = [(d, op) for d in digits for op in ops]  # visited in turn
    if unique and not allow_fewer:  # can every cell give its share? (cell i gets every len(cells)-th problem)
        for i, (d, op) in enumerate(cells):
            asked = n // len(cells) + (i < n % len(cells))
            if (have := _supply((d, op), want_heldout, asked)) < asked:
                raise ValueError(
                    f"the {split} split holds only {have} distinct {d}-digit {op!r} problems, but {asked} were "
                    f"asked of that cell (n={n} over {len(cells)} cells); ask for fewer, or pass "
                    f"allow_fewer=True to take every one there is"
                )
    rng = random.Random(f"{seed}-{split}")
    active = list(cells)
    out, seen, k = [], set(), 0
    taken, misses = dict.fromkeys(cells, 0), dict.fromkeys(cells, 0)
    while len(out) < n and active:
        cell = active[k % len(active)]
        p = random_problem(rng, *cell)
        if is_heldout(p) != want_heldout or (unique and p in seen):
            misses[cell] += 1
            # Has this cell run out? Only a unique draw can empty one. Checking first after
            # 2,000 misses keeps the random stream, and so every seed's draws, what it was
            # when 2,000 misses dropped a cell unchecked (that dropped cells with plenty left).
            if unique and misses[cell] >= 2000 and _supply(cell, want_heldout, taken[cell] + 1) <= taken[cell]:
                active.remove(cell)  # only reached with allow_fewer=True: the check above guards the rest
            continue
        seen.add(p)
        out.append(p)
        taken[cell] += 1
        k += 1
    return out


# ----------------------------------------------------------------- the task


@dataclass
class Arithmetic(Task):
    """Sums, differences and products of d-digit numbers, scored by exact integer answers."""

    name: ClassVar[str] = "arithmetic"
    level_unit: ClassVar[str] = " digit"
    digits: tuple = (1, 2, 3)  # difficulty levels: digits of the first operand (1-4)
    ops: tuple = ("+",)  # operations, from + - x

    def __post_init__(self):
        self.digits, self.ops = tuple(self.digits), tuple(self.ops)
        _check_request(self.digits, self.ops)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.digits)

    def sample(self, n, split="train", seed=0, unique=False):
        self.check(split=split)  # RL prompts come from the training split; another seed draws others
        return sample_problems(n, self.digits, self.ops, "test" if split == "test" else "train", seed, unique,
                               allow_fewer=unique)  # small cells (21 held-out 1-digit sums) give what they hold

    def corpus(self, problems, style="base", seed=0):
        self.check(style=style)
        return build_corpus(problems, style, seed)

    def worked(self, problem) -> str:
        return think_completion(problem)

    def accuracy(self, completion, problem) -> float:
        return accuracy_reward(completion, problem.answer)

    def level(self, problem) -> str:
        return str(problem.digits)

    def rewards(self) -> dict:
        return {"accuracy": accuracy_reward_batch}

    def parse(self, text: str) -> Problem:
        """'347+589' -> Problem(347, '+', 589, 3) (a '*' reads as 'x', a trailing '=' is dropped)."""
        s = text.strip().rstrip("=").replace(" ", "").replace("*", "x")
        for op in OPS:
            left, sep, right = s.partition(op)
            if sep and left.isascii() and right.isascii() and left.isdigit() and right.isdigit():
                return Problem(int(left), op, int(right), len(left))
        raise ValueError(f"cannot read {text!r} as a problem; write two whole numbers and one of {OPS}, "
                         f"e.g. '347+589'")

    def truth(self, problem) -> str:
        return str(problem.answer)

    def mistake(self, problem, completion) -> str:
        said = extract_answer(completion)
        shown = said if said is not None else f"no answer block in {completion[:60]!r}"
        return f"model says {problem.text}={shown}, truth {problem.answer}"
