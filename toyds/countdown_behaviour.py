"""Reading the thinking back: did a Countdown-lite completion check its work and go back?

R1-Zero's "aha moment" (R1 paper, section 2.2.4) is seen in its text: the model
re-evaluates a step and takes another path. To count it rather than quote one
example, this module parses the thinking of a completion (the search-trace shape of
toyds/countdown.py, '6-1=5 8+3=11 no,8-3=5-5=0 ok') into tries, each the candidate
tried and the verdict the model gave it ("ok", "no" or none), then measures one
completion (`behaviour`) and a set of them (`summarise`; `measure` also by difficulty):

    verify rate     completions with at least one verdict / completions
    backtrack rate  completions where a "no" is followed by another try / completions
    precision       P(the try solves it | verdict "ok")
    recall          P(verdict "no" | the try is wrong), over completions that check
    first-try accuracy, tries, length in tokens

A try is judged by the checker of toyds/countdown_rules.py on the operands the
model wrote, not on its working, so a slip in the arithmetic does not change what
was tried. examples/07_aha.py prints these before and after GRPO and logs them at
every RL step. How this differs from the paper: R1's aha moment was read by eye in
free text; here the base's corpus fixes the shape of the thinking, so a parser can
count it, and a piece in no recognised shape counts as a try that solves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyds.countdown import LEVELS, REDO, Countdown
from toyds.countdown_rules import accuracy, solves
from toyds.tokenizer import Tokenizer


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


def parse_group(group: str) -> list[tuple[str, str | None]]:
    """[('(8+3)+1', 'no'), ('(8-3)+1', 'ok')] from '6-1=5 8+3=11 no,8-3=5-5=0 ok'.

    A group with no head is a bare guess: '(8-3)+1' gives [('(8-3)+1', None)].
    Expressions are rebuilt from the operands the model wrote (the head's z and
    outer op, each try's x op1 y), not from its results, so a slip in the working
    does not change what was tried. A piece in no recognised shape is kept as it
    is (it solves nothing).
    """
    head, sep, rest = group.partition(" ")
    if not sep or "=" not in head:
        return [_split_verdict(group)]
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
        for expression, verdict in parse_group(group.strip(" ")):
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


def behaviour(completion: str, p: Countdown, tokenizer: Tokenizer | None = None) -> Behaviour:
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


def measure(problems: list[Countdown], completions: list[str]) -> dict:
    """summarise(), overall and by difficulty level: problems[i] is completions[i]'s problem."""
    tok = Tokenizer()
    bs = [behaviour(c, p, tok) for p, c in zip(problems, completions)]
    out = summarise(bs)
    out["by_difficulty"] = {lv: summarise([b for b, p in zip(bs, problems) if p.difficulty == lv])
                            for lv in LEVELS if any(p.difficulty == lv for p in problems)}
    return out
