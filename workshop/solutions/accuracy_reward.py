"""Solution to the `accuracy_reward` exercise: toyds.rl.rewards's own code, unchanged (is_plain_integer, extract_answer, accuracy_reward).

    toyds check accuracy_reward --file workshop/solutions/accuracy_reward.py
"""

from __future__ import annotations

from toyds.rl.rewards import DIGITS, MAX_ANSWER_DIGITS, _has_tag, _is_end, _truth_text, WHITESPACE
from toyds.core.tokenizer import ANSWER, END_ANSWER, END_THINK, EOS, THINK


def is_plain_integer(text: str, max_digits: int = MAX_ANSWER_DIGITS) -> bool:
    """True iff `text` is an integer spelled the one way Python prints it: 0, 7, -12, 936.

    Each refusal closes a door:
      '٣' '３' '³'            other Unicode digits: int('٣') == 3, but only 0-9 is our answer
      '+5' '5.0' '1_0' '5e0'  spellings that int() or float() accept: we never call them
      '5 6' '5,6'             two numbers in one block: hedging
      '05' '-0'               a second spelling of a number; one spelling each keeps the
                              comparison a plain string equality
      more than max_digits    checked first, so a 1 MB "number" costs nothing
    """
    if not isinstance(text, str) or len(text) > max_digits + 1:
        return False
    body = text[1:] if text.startswith("-") else text
    if not 1 <= len(body) <= max_digits or not all(ch in DIGITS for ch in body):
        return False
    if body == "0":
        return text == "0"  # "-0" is refused
    return body[0] != "0"  # "05" is refused


def extract_answer(completion: str) -> str | None:
    """The stripped content of the one answer block, or None if there is not exactly one.

    A well-formed block is `<answer>A</answer>` that is the last thing in the
    completion. The rules, and the hack each one stops:
      1. <answer> and </answer> each exactly once, in that order: several blocks
         would let a policy hedge (<answer>935</answer><answer>936</answer>).
      2. No tag inside the block: nesting is not an answer.
      3. After </answer> only whitespace and one <eos>: text after the answer
         ("<answer>936</answer> or 937") would be a second answer.
      4. Not inside the thinking: a <think> opened before <answer> must be closed
         before it, so a number the model only muttered while thinking earns nothing.
      5. No <eos> before the answer: the model stopped there, the rest is not its text.
    Text before the block (a trace, untagged working) is allowed: the reward
    checks the outcome, not the reasoning. Format is format_reward's business.
    """
    if not isinstance(completion, str):
        return None
    # 1. exactly one opening and one closing tag, opening first
    if completion.count(ANSWER) != 1 or completion.count(END_ANSWER) != 1:
        return None
    start, end = completion.find(ANSWER), completion.find(END_ANSWER)
    if end < start:
        return None
    content = completion[start + len(ANSWER) : end]
    # 2. no nesting, 3. the answer is the last word
    if _has_tag(content) or not _is_end(completion[end + len(END_ANSWER) :]):
        return None
    # 4. not hidden inside an unclosed <think>
    opened = completion.rfind(THINK, 0, start)
    if opened != -1 and completion.find(END_THINK, opened, start) == -1:
        return None
    # 5. nothing counts after the model's <eos>
    if completion.find(EOS, 0, start) != -1:
        return None
    return content.strip(WHITESPACE)


def accuracy_reward(completion: str, answer: int | str, *, max_digits: int = MAX_ANSWER_DIGITS) -> float:
    """1.0 iff the one answer block holds exactly the truth as a plain ASCII integer, else 0.0.

    `answer` is the truth (an int, or a str such as '936'); a malformed truth
    raises, because it is a bug in our data, not in the model's text.
    """
    truth = _truth_text(answer, max_digits)
    said = extract_answer(completion)
    # accuracy = 1[said is a plain integer and said == truth]   (string equality: no parsing)
    return float(said is not None and is_plain_integer(said, max_digits) and said == truth)
