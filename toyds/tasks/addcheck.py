"""Addition with optional checks: the control task where checking does not pay.

examples/07_aha.py sets this task beside Countdown-lite (tasks/countdown.py). On
Countdown a single pass is unreliable and a check is easy, so RL keeps the checks.
Here the worked column trace (tasks/arithmetic_traces.py) already makes a single
pass reliable, and the check, a subtraction done in one line with no working, is
harder than the sum it checks, so sharpening the single pass is cheaper than
verifying it. A base corpus mixes three styles after the prompt `347+589=`:

    plain    <think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer><eos>
    checked  <think>...;so 936;check 936-589=347 ok</think><answer>936</answer><eos>
    caught   <think>7+9=16;4+8+1=12;3+5+1=9;so 926;check 926-589=337 no;wait;7+9=16;...;so 936</think>...

In "caught" the first pass slips in one column (a result one off), the check
notices (337 is not 347), and the model works the sum again. Every style thinks in
tags, so the format reward cannot move the check rate; only its effect on accuracy can.

How this toy differs from a real model's self-checks: the check is always the same
subtraction, and a slip is always one column off by one. `has_check` reads a
completion back (did it write a check at all) and `measure` gives the contrast's
measures in examples/07_aha.py; `AdditionWithChecks` is the task ("addcheck").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import accuracy_reward
from toyds.tasks.arithmetic import Arithmetic, Problem
from toyds.tasks.arithmetic_traces import trace


@dataclass
class CheckMix:
    """Shares of each style in the base corpus (normalised)."""

    plain: float = 0.8  # the worked trace, unchecked
    checked: float = 0.1  # the trace, then a check that passes
    caught: float = 0.1  # a trace with one slip, a check that fails, and the sum worked again

    def __post_init__(self):
        ws = (self.plain, self.checked, self.caught)
        if any(not isinstance(w, (int, float)) or w < 0 for w in ws) or sum(ws) <= 0:
            raise ValueError(f"CheckMix shares must be >= 0 with a positive sum, got {ws}")


def slipped_trace(p: Problem, rng: random.Random) -> tuple[str, int]:
    """The column trace with one column's result one off (a slip), and the answer it then gives."""
    steps = trace(p).split(";")[:-1]  # drop "so 936"
    k = rng.randrange(len(steps))
    left, right = steps[k].split("=")
    wrong = int(right) + rng.choice((-1, 1)) if int(right) > 0 else 1
    steps[k] = f"{left}={wrong}"
    # the answer these columns now give: each column writes its last digit, the last all of it
    results = [int(s.split("=")[1]) for s in steps]
    said = int(str(results[-1]) + "".join(str(r % 10) for r in reversed(results[:-1])))
    return ";".join(steps) + f";so {said}", said


def check(p: Problem, said: int) -> str:
    """'check 936-589=347 ok': subtract the second operand, compare with the first."""
    back = said - p.b
    return f"check {said}-{p.b}={back} {'ok' if back == p.a else 'no'}"


def completion(p: Problem, style: str, rng: random.Random) -> str:
    if p.op != "+":
        raise ValueError(f"addcheck is for addition; got {p.text}")
    if style == "plain":
        body = trace(p)
    elif style == "checked":
        body = f"{trace(p)};{check(p, p.answer)}"
    elif style == "caught":
        slipped, said = slipped_trace(p, rng)
        if said == p.answer:  # a slip that cancels out: nothing to catch, write it plainly
            body = f"{trace(p)};{check(p, p.answer)}"
        else:
            body = f"{slipped};{check(p, said)};wait;{trace(p)}"
    else:
        raise ValueError(f"unknown style {style!r}; styles are plain, checked, caught")
    return f"<think>{body}</think><answer>{p.answer}</answer><eos>"


def build_corpus(problems: list[Problem], mix: CheckMix | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, completion) pairs, one per problem, styles drawn from mix."""
    mix = mix or CheckMix()
    rng = random.Random(seed)
    styles = rng.choices(("plain", "checked", "caught"), weights=(mix.plain, mix.checked, mix.caught),
                         k=len(problems))
    return [(p.prompt(), completion(p, s, rng)) for p, s in zip(problems, styles)]


def has_check(completion: str) -> bool:
    """The completion wrote a check (before its answer)."""
    end = completion.find("<answer>")
    return "check " in (completion if end == -1 else completion[:end])


def measure(problems: list[Problem], texts: list[str]) -> dict:
    """The contrast's measures in examples/07_aha.py: accuracy, check rate, length (tokens).

    problems[i] is texts[i]'s problem; means over completions (0.0 each when there are none).
    """
    tok = Tokenizer()
    n = max(len(texts), 1)
    return {
        "accuracy": sum(accuracy_reward(t, p.answer) for p, t in zip(problems, texts)) / n,
        "check_rate": sum(has_check(t) for t in texts) / n,
        "mean_length": sum(len(tok.encode(t)) for t in texts) / n,
    }


@dataclass
class AdditionWithChecks(Arithmetic):
    """Addition whose base corpus sometimes checks its sum: the contrast of examples/07_aha.py."""

    name: ClassVar[str] = "addcheck"
    ops: tuple = ("+",)  # addition only: the check subtracts
    mix: CheckMix = field(default_factory=CheckMix)  # styles of the "base" corpus

    def __post_init__(self):
        super().__post_init__()
        if self.ops != ("+",):
            raise ValueError(f"task 'addcheck' is addition only (its check subtracts), got ops={self.ops!r}")

    def corpus(self, problems, style="base", seed=0):
        self.check(style=style)
        if style == "direct":
            raise ValueError("task 'addcheck' thinks in every style: its styles are 'base' (some checks) and 'think'")
        return build_corpus(problems, self.mix if style == "base" else CheckMix(1, 0, 0), seed)

    def measure(self, problems, completions) -> dict:
        return measure(problems, completions)
