"""Reading a Countdown-lite completion by rule: is its answer right, and what did its thinking do?

Two readers of the same text (tasks/countdown.py makes the problems and traces).

The answer (the rule-based rewards GRPO trains on, R1 paper section 2.2.2):

    r = accuracy + 0.5 x format

`accuracy` scores the final answer only: exactly one answer block (rl/rewards.py
`extract_answer`), holding an expression over ASCII digits, + - x and parentheses
(standard precedence), that uses exactly the given numbers, each once, and evaluates
to the target. Unlike arithmetic's rule the answer is checked, not compared with one
string: a problem may have several solutions. It is total, linear in the text and
never eval()s model text; each hack it refuses is listed in `accuracy`.

The thinking (R1-Zero's "aha moment", section 2.2.4, counted rather than quoted):
the search-trace shape '6-1=5 8+3=11 no,8-3=5-5=0 ok' is parsed into tries, each the
candidate tried and the verdict the model gave it ("ok", "no" or none):

    verify rate     completions with at least one verdict / completions
    backtrack rate  completions where a "no" is followed by another try / completions
    precision       P(the try solves it | verdict "ok")
    recall          P(verdict "no" | the try is wrong), over completions that check
    first-try accuracy, tries, length in tokens

A try is judged on the operands the model wrote, not on its working, so a slip in
the arithmetic does not change what was tried. How this differs from the paper: R1's
aha moment was read by eye in free text; here the base's corpus fixes the shape of
the thinking, so a parser can count it, and a piece in no recognised shape counts as
a try that solves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import extract_answer

UNDO = {"+": "-", "x": ":"}  # working back from the target undoes the outer op (':' divides)
REDO = {v: k for k, v in UNDO.items()}
LEVELS = ("1", "2", "3+")  # difficulty: how many candidates hit the target


def apply(a: int, op: str, b: int) -> int:
    # the truth, computed with Python integers: never by evaluating text
    return a + b if op == "+" else a - b if op == "-" else a * b


# ------------------------------------------------------------------ the answer

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
    """1.0 iff the one answer block solves the problem (rl/rewards.py's block rules), else 0.0.

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


# ---------------------------------------------------------------- the thinking


@dataclass(frozen=True)
class Try:
    expression: str  # the candidate as tried, e.g. "(8-3)+1"
    correct: bool  # it solves the problem (the checker's rule, on the operands the model wrote)
    verdict: str | None  # "ok", "no", or None when the try was not checked


def _thinking(completion: str) -> str:
    start = completion.find("<think>")
    if start == -1:
        return ""
    end = completion.find("</think>", start)
    return completion[start + len("<think>"): end if end != -1 else len(completion)]


def _split_verdict(segment: str) -> tuple[str, str | None]:
    for v in ("ok", "no"):
        if segment.endswith(" " + v):
            return segment[: -len(v) - 1], v
    return segment, None


def parse_group(group: str, two_numbers: bool = False) -> list[tuple[str, str | None]]:
    """[('(8+3)+1', 'no'), ('(8-3)+1', 'ok')] from '6-1=5 8+3=11 no,8-3=5-5=0 ok'.

    A group with no head is a bare guess: '(8-3)+1' gives [('(8-3)+1', None)]. With two_numbers
    (tasks/countdown_easy.py) the tries need no head: '8+3=11 no,8-3=5-5=0 ok' gives [('8+3', 'no'),
    ('8-3', 'ok')].
    Expressions are rebuilt from the operands the model wrote (the head's z and
    outer op, each try's x op1 y), not from its results, so a slip in the working
    does not change what was tried. A piece in no recognised shape is kept as it
    is (it solves nothing).
    """
    head, sep, rest = group.partition(" ")
    if not sep or "=" not in head:
        return [_split_verdict(group)]
    if two_numbers:
        return [(work.split("=")[0], verdict) for work, verdict in map(_split_verdict, group.split(","))]
    left = head.split("=")[0]  # "6-1": the target, the undone outer op, z
    i = next((k for k in range(1, len(left)) if left[k] in REDO), None)
    out = []
    for piece in rest.split(","):
        work, verdict = _split_verdict(piece)
        inner = work.split("=")[0]  # "8-3"
        if i is None or not any(ch in "+-x" for ch in inner[1:]):
            out.append((piece, verdict))
        else:
            out.append((f"({inner}){REDO[left[i]]}{left[i + 1:]}", verdict))
    return out


def parse_tries(completion: str, numbers, target: int) -> list[Try]:
    """Every try in the thinking, in order."""
    think = _thinking(completion)
    out = []
    for group in think.split(";") if think else []:
        for expression, verdict in parse_group(group.strip(" "), two_numbers=len(numbers) == 2):
            out.append(Try(expression, solves(expression, numbers, target), verdict))
    return out


@dataclass(frozen=True)
class Behaviour:
    """What one completion did: the measures of examples/07_aha.py."""

    accuracy: float  # the final answer solves the problem
    tries: int  # candidates considered (a direct guess is one)
    verifies: bool  # at least one try was checked ("ok" or "no")
    backtracks: bool  # a "no" was followed by another try
    first_correct: bool  # the first try already solved it
    oks: int  # verdicts "ok" ...
    true_oks: int  # ... of which the try really solved it
    wrong_checked: int  # wrong tries in a completion that checks ...
    caught: int  # ... of which the verdict was "no"
    length: int  # tokens, <eos> included


def behaviour(completion: str, p, tokenizer: Tokenizer | None = None) -> Behaviour:
    tok = tokenizer or Tokenizer()
    tries = parse_tries(completion, p.numbers, p.target)
    verifies = any(t.verdict for t in tries)
    wrong = [t for t in tries if not t.correct] if verifies else []
    return Behaviour(
        accuracy=accuracy(completion, p.numbers, p.target),
        tries=len(tries),
        verifies=verifies,
        backtracks=any(t.verdict == "no" for t in tries[:-1]),
        first_correct=bool(tries) and tries[0].correct,
        oks=sum(t.verdict == "ok" for t in tries),
        true_oks=sum(t.verdict == "ok" and t.correct for t in tries),
        wrong_checked=len(wrong),
        caught=sum(t.verdict == "no" for t in wrong),
        length=len(tok.encode(completion)),
    )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def summarise(behaviours: list[Behaviour]) -> dict:
    """Means over completions; precision and recall pool the tries (None when undefined)."""
    n = len(behaviours)
    bs = behaviours
    first_wrong = [b for b in bs if not b.first_correct]
    first_right = [b for b in bs if b.first_correct]
    return {
        "accuracy": _ratio(sum(b.accuracy for b in bs), n),
        "verify_rate": _ratio(sum(b.verifies for b in bs), n),
        "backtrack_rate": _ratio(sum(b.backtracks for b in bs), n),
        "mean_tries": _ratio(sum(b.tries for b in bs), n),
        "mean_length": _ratio(sum(b.length for b in bs), n),
        # precision = P(the try solves it | verdict "ok")
        "verify_precision": _ratio(sum(b.true_oks for b in bs), sum(b.oks for b in bs)),
        # recall = P(verdict "no" | the try is wrong), over completions that check
        "verify_recall": _ratio(sum(b.caught for b in bs), sum(b.wrong_checked for b in bs)),
        "first_try_accuracy": _ratio(sum(b.first_correct for b in bs), n),
        "backtrack_if_first_wrong": _ratio(sum(b.backtracks for b in first_wrong), len(first_wrong)),
        "backtrack_if_first_right": _ratio(sum(b.backtracks for b in first_right), len(first_right)),
        "n": n,
    }


def measure(problems: list, completions: list[str], levels: tuple[str, ...] = LEVELS) -> dict:
    """summarise(), overall and by difficulty level: problems[i] is completions[i]'s problem."""
    tok = Tokenizer()
    bs = [behaviour(c, p, tok) for p, c in zip(problems, completions)]
    out = summarise(bs)
    out["by_difficulty"] = {lv: summarise([b for b, p in zip(bs, problems) if p.difficulty == lv])
                            for lv in levels if any(p.difficulty == lv for p in problems)}
    return out
