"""Countdown-lite's rule-based rewards: does the final answer solve the problem?

DeepSeek-R1-Zero learned from rewards computed by rules, not by a network (R1 paper,
section 2.2.2): an accuracy reward on the final answer and a format reward on the
<think>/<answer> tags. This module is those two rules for Countdown-lite
(toyds/countdown.py), as plain `str -> float` functions and their TRL-style batched
forms; examples/07_aha.py passes the batched forms to GRPO with weights 1.0 and 0.5:

    r = accuracy + 0.5 x format

The accuracy rule (`accuracy`) scores the final answer only: exactly one answer
block (toyds/rewards.py `extract_answer`), holding an expression over ASCII digits,
+ - x and parentheses (standard precedence), that uses exactly the given numbers,
each once, and evaluates to the target. It is total, linear in the text and never
eval()s model text; each hack it refuses is listed in `accuracy`.

How this differs from the arithmetic task's rule (toyds/rewards.py): the answer is
not compared with one right string but checked, since a problem may have several
solutions; any expression over + - x and parentheses is accepted, not only the
(x op1 y) op2 z shape the traces use. The format rule is toyds/rewards.py's, unchanged.
"""

from __future__ import annotations

from toyds.countdown import apply
from toyds.rewards import extract_answer, format_reward

MAX_ANSWER_CHARS = 32  # an answer over three one-digit numbers is at most ~11 characters
DIGITS = frozenset("0123456789")  # ASCII only: '٣'.isdigit() is True too


def parse_expression(text: str) -> tuple[int, list[int]] | None:
    """(value, numbers used) of an expression over ASCII digits, + - x and ( ), or None.

    Standard precedence (x before + and -), left to right, no unary signs, numbers
    in their one spelling (no leading zeros). Recursive descent over at most
    MAX_ANSWER_CHARS characters, so depth and time are bounded.
    """
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ANSWER_CHARS:
        return None
    pos, used = 0, []

    def number():
        nonlocal pos
        start = pos
        while pos < len(text) and text[pos] in DIGITS:
            pos += 1
        digits = text[start:pos]
        if not digits or (len(digits) > 1 and digits[0] == "0"):
            return None
        used.append(int(digits))
        return int(digits)

    def factor():  # number | ( expr )
        nonlocal pos
        if pos < len(text) and text[pos] == "(":
            pos += 1
            v = expr()
            if v is None or pos >= len(text) or text[pos] != ")":
                return None
            pos += 1
            return v
        return number()

    def term():  # factor (x factor)*
        nonlocal pos
        v = factor()
        while v is not None and pos < len(text) and text[pos] == "x":
            pos += 1
            w = factor()
            v = None if w is None else v * w
        return v

    def expr():  # term ((+|-) term)*
        nonlocal pos
        v = term()
        while v is not None and pos < len(text) and text[pos] in "+-":
            op = text[pos]
            pos += 1
            w = term()
            v = None if w is None else apply(v, op, w)
        return v

    value = expr()
    if value is None or pos != len(text):
        return None
    return value, used


def solves(expression: str, numbers, target: int) -> bool:
    """The expression uses exactly the given numbers, each once, and equals the target."""
    parsed = parse_expression(expression)
    if parsed is None:
        return False
    value, used = parsed
    return sorted(used) == sorted(numbers) and value == target


def accuracy(completion: str, numbers, target: int) -> float:
    """1.0 iff the one answer block solves the problem (toyds/rewards.py's block rules), else 0.0.

    The hacks it refuses, each by one rule: a number not given or given once and
    used twice (multiset equality), a term too many or too few (same), two answers
    or an answer only inside <think> (extract_answer), '٨' for 8 (ASCII digits
    only), '08' (one spelling), text after the answer (extract_answer).
    """
    said = extract_answer(completion)
    return float(said is not None and solves(said, numbers, target))


def accuracy_batch(completions, numbers, target, **kwargs) -> list[float]:
    """TRL-style: one score per completion; `numbers` and `target` are dataset columns."""
    if isinstance(completions, str) or len(completions) != len(numbers) or len(numbers) != len(target):
        raise ValueError(f"need one numbers and one target per completion: {len(completions)} completions, "
                         f"{len(numbers)} numbers, {len(target)} targets")
    return [accuracy(c, n, t) if isinstance(c, str) else 0.0 for c, n, t in zip(completions, numbers, target)]


def format_batch(completions, **kwargs) -> list[float]:
    """R1's format reward, <think>T</think><answer>A</answer> (toyds/rewards.py)."""
    return [format_reward(c) if isinstance(c, str) else 0.0 for c in completions]
