"""Exercise `accuracy_reward`: a rule-based accuracy reward that a policy cannot game.

R1-Zero learned to reason from two rewards computed by rules (DeepSeek-R1, section
2.2.2): accuracy (is the one final answer right?) and format. GRPO makes whatever
scores well more likely, so any text your checker over-credits is what the policy
learns to write: two answers, one of them right; an answer hidden in its thinking;
'٨٥', which int() reads as 85. This is reward hacking, and each rule closes one door:

    accuracy = 1  iff  the completion has exactly one <answer>A</answer> block, well placed,
                       and A (stripped of whitespace) is the truth spelled as Python prints it
    accuracy = 0  otherwise, and for anything that is not a str (never an exception)

Write the three functions below (the two helpers are yours to use or not: the check
calls accuracy_reward only). They keep the names and signatures of toyds.rl.rewards's,
so your versions drop into the library unchanged. Never call int() or float() on the
model's text, and never use str.isdigit(): both accept more than '0'-'9'.

    toyds check accuracy_reward

Notebook: notebooks/02_rewards.ipynb. About 30 minutes.
"""

from __future__ import annotations

from toyds.rl.rewards import DIGITS, MAX_ANSWER_DIGITS, WHITESPACE, _has_tag, _is_end, _truth_text# noqa: F401
from toyds.core.tokenizer import ANSWER, END_ANSWER, END_THINK, EOS, THINK# "<answer>", "</answer>", ...  # noqa: F401

# given helpers (from toyds.rl.rewards):
#   _has_tag(s)          True if s contains any special tag (<think>, <answer>, <eos>, ...)
#   _is_end(tail)        True if tail is only whitespace and at most one <eos>
#   _truth_text(answer, max_digits)  the truth as its one accepted spelling: 936 -> '936'


def is_plain_integer(text: str, max_digits: int = MAX_ANSWER_DIGITS) -> bool:
    """True iff `text` is an integer spelled the one way Python prints it: 0, 7, -12, 936.

    Refuse: other Unicode digits ('٣', '３', '³'); '+5', '5.0', '1_0', '5e0'; '5 6';
    leading zeros ('05') and '-0'; more than max_digits digits (check the length
    first, so a 1 MB "number" costs nothing).
    """
    # TODO
    raise NotImplementedError("write is_plain_integer (or do without it)")


def extract_answer(completion: str) -> str | None:
    """The stripped content of the one answer block, or None if there is not exactly one.

      1. <answer> and </answer> each exactly once, in that order (no hedging with two blocks)
      2. no tag inside the block
      3. after </answer> only whitespace and one <eos> (no second answer after it)
      4. not inside the thinking: a <think> opened before <answer> is closed before it
      5. no <eos> before the answer (the model stopped there)
    """
    # TODO
    raise NotImplementedError("write extract_answer (or do without it)")


def accuracy_reward(completion: str, answer: int | str, *, max_digits: int = MAX_ANSWER_DIGITS) -> float:
    """1.0 iff the one answer block holds exactly the truth as a plain ASCII integer, else 0.0.

    `answer` is the truth (an int, or a str such as '936'); _truth_text(answer,
    max_digits) gives its one spelling (and raises for a malformed truth: a bug in our
    data, not in the model's text).
    """
    # TODO accuracy = 1[the answer block holds a plain integer, spelled exactly as the truth]
    raise NotImplementedError("write accuracy_reward")
