"""Arithmetic problems, worked traces a person can follow, and base-model corpora.

Every toyds experiment runs on problems like `347+589`, because their answers can
be checked exactly (the accuracy reward of DeepSeek-R1, section 2.2.2, needs a
verifiable answer) and a tiny model can learn them on a CPU in a minute.

A problem's difficulty is its number of digits d (1-4). `+` and `-` take two
d-digit operands (subtraction keeps a >= b, so answers are never negative); `x`
multiplies a d-digit number by one digit from 2 to 9, the "small operand".

Each problem has a worked trace, done column by column from the right, the way it
is taught at school; carries and borrows are written into the next column:

    347+589   7+9=16;4+8+1=13;3+5+1=9;so 936     (the +1 is the carry)
    347-189   17-9=8;14-1-8=5;3-1-1=1;so 158     (17 = borrowed ten, -1 = paid back)
    347x8     7x8=56;4x8+5=37;3x8+3=27;so 2776   (+5 = carry of 56)

A *base model* corpus mixes three kinds of completion after the prompt `347+589=`:

    direct    <answer>936</answer><eos>
    think     <think>7+9=16;...;so 936</think><answer>936</answer><eos>
    untagged  7+9=16;4+8+1=13;3+5+1=9;so 936<eos>

so a model pretrained on it sometimes thinks and sometimes does not, and never
reliably uses the format: the starting point of R1-Zero (examples/03_r1_zero.py).

Train and held-out problems never overlap: a problem is held out iff a stable hash
of its text falls in a fixed 20% bucket, whatever seed or size a run asks for.
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass, field

from toyds.tokenizer import ANSWER, BOS, END_ANSWER, END_THINK, EOS, THINK

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


# ---------------------------------------------------------------- worked traces


def _digits_lsb(x: int, width: int) -> list[int]:
    return [(x // 10**i) % 10 for i in range(width)]


def trace(p: Problem) -> str:
    """The worked, column-by-column solution, ending in 'so <answer>'."""
    steps = []
    if p.op == "+":
        width = max(len(str(p.a)), len(str(p.b)))
        carry = 0
        for da, db in zip(_digits_lsb(p.a, width), _digits_lsb(p.b, width)):
            s = da + db + carry
            steps.append(f"{da}+{db}" + (f"+{carry}" if carry else "") + f"={s}")
            carry = s // 10
    elif p.op == "-":
        width = len(str(p.a))
        borrow = 0
        for da, db in zip(_digits_lsb(p.a, width), _digits_lsb(p.b, width)):
            need = da - borrow < db  # borrow ten from the next column
            top = da + 10 * need
            d = top - borrow - db
            steps.append(f"{top}" + (f"-{borrow}" if borrow else "") + f"-{db}={d}")
            borrow = int(need)
    else:  # "x": a multi-digit number times one digit, carrying the tens
        carry = 0
        for da in _digits_lsb(p.a, len(str(p.a))):
            s = da * p.b + carry
            steps.append(f"{da}x{p.b}" + (f"+{carry}" if carry else "") + f"={s}")
            carry = s // 10
    return ";".join(steps) + f";so {p.answer}"


def trace_answer(text: str) -> int | None:
    """Recompute the answer a trace states, from its steps alone (for tests)."""
    if ";so " not in text:
        return None
    steps = text.split(";so ")[0].split(";")
    results = [int(s.split("=")[1]) for s in steps]
    # every column writes its last digit; the final column writes all of its result
    digits = [str(r % 10) for r in results[:-1]]
    return int(str(results[-1]) + "".join(reversed(digits)))


# ----------------------------------------------------------------- completions


def direct_completion(p: Problem) -> str:
    return f"{ANSWER}{p.answer}{END_ANSWER}{EOS}"


def think_completion(p: Problem) -> str:
    return f"{THINK}{trace(p)}{END_THINK}{ANSWER}{p.answer}{END_ANSWER}{EOS}"


def untagged_completion(p: Problem) -> str:
    return f"{trace(p)}{EOS}"


@dataclass
class CorpusMix:
    """Shares of each completion style in a base-model corpus (they are normalised)."""

    direct: float = 0.45  # <answer>936</answer>: the answer with no visible thinking
    think: float = 0.30  # <think>trace</think><answer>936</answer>: thinking, in format
    untagged: float = 0.25  # the trace with no tags at all: thinking, out of format
    styles: tuple = field(default=("direct", "think", "untagged"), repr=False)

    def __post_init__(self):
        for name in self.styles:
            w = getattr(self, name)
            if not (isinstance(w, (int, float)) and w >= 0):
                raise ValueError(f"CorpusMix.{name} must be a share >= 0, got {w!r}")
        if self.direct + self.think + self.untagged <= 0:
            raise ValueError("CorpusMix needs at least one positive share")


MIX_PRESETS = {
    "direct": CorpusMix(1, 0, 0),  # answers only: the "no chain of thought" model
    "think": CorpusMix(0, 1, 0),  # worked traces only
    "base": CorpusMix(),  # the mixed base model R1-Zero starts from
}

_STYLE_FN = {"direct": direct_completion, "think": think_completion, "untagged": untagged_completion}


def build_corpus(problems: list[Problem], mix: CorpusMix | str = "base", seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, completion) pairs, one per problem, styles drawn from `mix`."""
    if isinstance(mix, str):
        if mix not in MIX_PRESETS:
            raise ValueError(f"unknown corpus mix {mix!r}; presets are {sorted(MIX_PRESETS)}")
        mix = MIX_PRESETS[mix]
    rng = random.Random(seed)
    weights = [mix.direct, mix.think, mix.untagged]
    styles = rng.choices(mix.styles, weights=weights, k=len(problems))
    return [(p.prompt(), _STYLE_FN[s](p)) for p, s in zip(problems, styles)]
