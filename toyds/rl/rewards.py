"""Rule-based rewards: is the answer right, and is it in the format? (DeepSeek-R1, 2.2.2)

DeepSeek-R1-Zero learned to reason from two rewards computed by rules, not by a
network (R1 paper, section 2.2.2):

    accuracy  1 if the one final answer, in <answer>...</answer>, is exactly right, else 0
    format    1 if the thinking sits in <think>...</think> and the answer follows it
              in <answer>...</answer>, else 0
    reward    r = accuracy + format_weight * format

The paper skips neural reward models on purpose: they "may suffer from reward
hacking" at scale, and retraining one costs compute and complicates the pipeline.
Reward hacking is a policy raising its reward without doing the task. GRPO makes
whatever scores well more likely, so any text the checker over-credits (two
answers, one of them right; a '٣' that int() reads as 3) is what the policy learns
to write. Each rule below closes one such door, and its comment says which.

How this toy differs: R1 checked boxed maths answers and ran code against tests;
here answers are integers, compared as text with one accepted spelling, and the
format weight (0.5) and the graded variant are our choices (the paper gives none).
Every function is total (any str in, a float out), linear in the input (str.find
and str.count, no backtracking regex), and never evaluates model text. The batched
forms are TRL's reward functions; rl/reward_registry.py names them for --reward.
examples/02_rewards.py walks through a table of cases, hacks included.
"""

from __future__ import annotations

import math

from toyds.core.tokenizer import ANSWER, END_ANSWER, END_THINK, EOS, SPECIALS, THINK

WHITESPACE = " \t\n\r"  # ASCII only: str.strip() would also eat exotic Unicode spaces
DIGITS = frozenset("0123456789")  # ASCII only: str.isdigit() is also true for '٣', '３', '³'
MAX_ANSWER_DIGITS = 64  # default cap on answer length: far above any toyds answer, far below 1 MB


def _blank(s: str) -> bool:
    return s.strip(WHITESPACE) == ""


def _has_tag(s: str) -> bool:
    return any(tag in s for tag in SPECIALS)


def _is_text(s: str) -> bool:
    """Something to read inside a block: not blank, and no tag nested in it."""
    return not _blank(s) and not _has_tag(s)


def _is_end(tail: str) -> bool:
    """Only whitespace and at most one <eos> after the answer: the answer is the last word."""
    return tail.strip(WHITESPACE) in ("", EOS)


# --------------------------------------------------------------- plain integers


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


def _check_max_digits(max_digits) -> None:
    if isinstance(max_digits, bool) or not isinstance(max_digits, int) or max_digits < 1:
        raise ValueError(f"max_digits must be an integer >= 1, got {max_digits!r}")


def _truth_text(answer: int | str, max_digits: int) -> str:
    """The truth as its one accepted spelling. Bad truths are our bug, so they raise."""
    _check_max_digits(max_digits)
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise TypeError(f"the truth must be an int or a str like '936', got {type(answer).__name__} {answer!r:.40}")
    try:
        text = str(answer) if isinstance(answer, int) else answer.strip(WHITESPACE)
    except ValueError as e:  # Python refuses to print ints over 4300 digits
        raise ValueError(f"the truth is too long to print as an int ({e}); pass it as a str") from e
    if not is_plain_integer(text, max_digits):
        raise ValueError(f"the truth {text[:40]!r} is not a plain integer of at most {max_digits} digits "
                         "(like 936 or -12, no leading zeros); pass max_digits= for longer answers")
    return text


# ------------------------------------------------------------ the answer block


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


# ------------------------------------------------------------------- the format


def _format_checks(c: str) -> tuple[bool, bool, bool, bool]:
    """The four tags of <think>T</think><answer>A</answer>: is each one well placed?

    A tag counts only if it occurs exactly once. T and A must be non-blank and
    tag-free: an empty <think></think> is the cheapest way to collect a format
    reward without thinking, and a policy will find it.
    """
    t0, t1, a0, a1 = (c.find(tag) if c.count(tag) == 1 else -1 for tag in (THINK, END_THINK, ANSWER, END_ANSWER))
    thinking = c[t0 + len(THINK) : t1] if 0 <= t0 < t1 else ""
    answer = c[a0 + len(ANSWER) : a1] if 0 <= a0 < a1 else ""
    # <think> opens the completion (whitespace aside)
    opens = t0 != -1 and _blank(c[:t0])
    # </think> closes real thinking: non-blank, no tags inside
    thinks = 0 <= t0 < t1 and _is_text(thinking)
    # <answer> follows </think> with only whitespace between
    answers_next = 0 <= t1 < a0 and _blank(c[t1 + len(END_THINK) : a0])
    # </answer> closes a real answer and ends the text (bar whitespace and one <eos>)
    closes = 0 <= a0 < a1 and _is_text(answer) and _is_end(c[a1 + len(END_ANSWER) :])
    return opens, thinks, answers_next, closes


def format_reward(completion: str, *, graded: bool = False) -> float:
    """1.0 iff the completion is <think>T</think><answer>A</answer>, else 0.0.

    Whitespace is allowed around and between the blocks, and one trailing <eos>;
    each tag occurs exactly once, in that order, nothing nested, nothing after
    </answer>, T and A not blank. This is the reward R1-Zero used.

    graded=True gives 0.25 per well-placed tag (0, 0.25, ..., 1.0) for reward
    shaping. It is off by default because partial credit invites hacking: each
    tag now pays on its own, so a policy can bank credit for tags without the
    structure they stand for (a lone `<answer>936</answer>` earns 0.25, and any
    well-formed text followed by junk earns 0.75), and a few cheap tags can
    outweigh the hard-won accuracy signal. All-or-nothing leaves no such gradient.
    """
    if not isinstance(completion, str):
        return 0.0
    checks = _format_checks(completion)
    if graded:
        # format = (number of well-placed tags) / 4
        return sum(checks) / 4
    return float(all(checks))


def combined_reward(completion: str, answer: int | str, *, format_weight: float = 0.5, graded: bool = False,
                    max_digits: int = MAX_ANSWER_DIGITS) -> float:
    """accuracy + format_weight * format, the sum R1 trains on.

    The default weight 0.5 is ours: below 1, a right answer out of format (1.0)
    still beats a wrong one in format (0.5), so the format can never pay more
    than being right.
    """
    if isinstance(format_weight, bool) or not isinstance(format_weight, (int, float)) \
            or not math.isfinite(format_weight) or format_weight < 0:
        raise ValueError(f"format_weight must be a finite number >= 0, got {format_weight!r}")
    # r = accuracy + format_weight * format
    return (accuracy_reward(completion, answer, max_digits=max_digits)
            + format_weight * format_reward(completion, graded=graded))


# ----------------------------------------------------------- batched, TRL-style


def reward_name(fn) -> str:
    """The name a trainer logs a reward function under (TRL's): its __name__, through functools.partial."""
    while hasattr(fn, "func"):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def completion_text(completion) -> str | None:
    """The text of one completion as TRL passes it, or None for anything else.

    Either a plain str, or chat messages ending in the assistant's reply:
    [{"role": "assistant", "content": "..."}]; the last message is scored. When a
    chat template's parser has moved the thinking out of the text (TRL puts it in
    "reasoning_content", some templates in "thinking", and leaves only what followed
    </think> in "content"), the thinking is put back in its tags, so the format
    reward sees the completion the model wrote instead of scoring 0 on every one.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        msg = completion[-1]
        content = msg.get("content")
        if msg.get("role", "assistant") != "assistant" or not isinstance(content, str):
            return None
        reasoning = msg.get("reasoning_content", msg.get("thinking"))
        return f"{THINK}{reasoning}{END_THINK}{content}" if isinstance(reasoning, str) else content
    return None


def _check_batch(completions, answer=None) -> None:
    if isinstance(completions, str) or not isinstance(completions, (list, tuple)):
        raise TypeError(f"completions must be a list of completions, got {type(completions).__name__}")
    if answer is not None and (isinstance(answer, (str, int)) or len(answer) != len(completions)):
        n = len(answer) if isinstance(answer, (list, tuple)) else repr(answer)[:40]
        raise ValueError(f"answer must be a list with one truth per completion: "
                         f"{len(completions)} completions, answer {n}")


def accuracy_reward_batch(completions, answer, *, max_digits: int = MAX_ANSWER_DIGITS, **kwargs) -> list[float]:
    """accuracy_reward over a batch: GRPOTrainer(reward_funcs=[accuracy_reward_batch, ...]).

    `answer` is the dataset column of truths, one per completion; other keyword
    arguments TRL passes (prompts, completion_ids, ...) are ignored. Anything
    that is not a str or chat messages scores 0.0.
    """
    _check_batch(completions, answer)
    return [accuracy_reward(completion_text(c), a, max_digits=max_digits) for c, a in zip(completions, answer)]


def format_reward_batch(completions, *, graded: bool = False, **kwargs) -> list[float]:
    """format_reward over a batch; extra keyword arguments (answer, prompts, ...) are ignored."""
    _check_batch(completions)
    return [format_reward(completion_text(c), graded=graded) for c in completions]


def combined_reward_batch(completions, answer, *, format_weight: float = 0.5, graded: bool = False,
                          max_digits: int = MAX_ANSWER_DIGITS, **kwargs) -> list[float]:
    """combined_reward over a batch, for trainers that take a single reward function."""
    _check_batch(completions, answer)
    return [combined_reward(completion_text(c), a, format_weight=format_weight, graded=graded, max_digits=max_digits)
            for c, a in zip(completions, answer)]
