"""Worked traces a person can follow, and the corpora base models are pretrained on.

Each arithmetic problem (tasks/arithmetic.py) has a worked trace, done column by
column from the right, the way it is taught at school; carries and borrows are
written into the next column:

    347+589   7+9=16;4+8+1=13;3+5+1=9;so 936     (the +1 is the carry)
    347-189   17-9=8;14-1-8=5;3-1-1=1;so 158     (17 = borrowed ten, -1 = paid back)
    347x8     7x8=56;4x8+5=37;3x8+3=27;so 2776   (+5 = carry of 56)

A *base model* corpus mixes three kinds of completion after the prompt `347+589=`:

    direct    <answer>936</answer><eos>
    think     <think>7+9=16;...;so 936</think><answer>936</answer><eos>
    untagged  7+9=16;4+8+1=13;3+5+1=9;so 936<eos>

so a model pretrained on it sometimes thinks and sometimes does not, and never
reliably uses the format: the starting point of R1-Zero (examples/03_r1_zero.py).
Lee et al. (2023, "Teaching arithmetic to small transformers") found such
scratchpads are what lets a small transformer add; chapter 0 measures it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from toyds.core.tokenizer import ANSWER, END_ANSWER, END_THINK, EOS, THINK


def _digits_lsb(x: int, width: int) -> list[int]:
    return [(x // 10**i) % 10 for i in range(width)]


def trace(p) -> str:
    """The worked, column-by-column solution of an arithmetic Problem, ending in "so <answer>"."""
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


def direct_completion(p) -> str:
    return f"{ANSWER}{p.answer}{END_ANSWER}{EOS}"


def think_completion(p) -> str:
    return f"{THINK}{trace(p)}{END_THINK}{ANSWER}{p.answer}{END_ANSWER}{EOS}"


def untagged_completion(p) -> str:
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


def build_corpus(problems: list, mix: CorpusMix | str = "base", seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, completion) pairs, one per problem, styles drawn from `mix`."""
    if isinstance(mix, str):
        if mix not in MIX_PRESETS:
            raise ValueError(f"unknown corpus mix {mix!r}; presets are {sorted(MIX_PRESETS)}")
        mix = MIX_PRESETS[mix]
    rng = random.Random(seed)
    weights = [mix.direct, mix.think, mix.untagged]
    styles = rng.choices(mix.styles, weights=weights, k=len(problems))
    return [(p.prompt(), _STYLE_FN[s](p)) for p, s in zip(problems, styles)]
