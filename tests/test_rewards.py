"""Rule-based rewards: known-good and known-bad cases for every rule, the hacks a
policy finds, timing on huge inputs, and a property test against plain references."""

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toyds.core.tokenizer import SPECIALS
from toyds.rl.rewards import (
    accuracy_reward,
    accuracy_reward_batch,
    combined_reward,
    combined_reward_batch,
    completion_text,
    extract_answer,
    format_reward,
    format_reward_batch,
    is_plain_integer,
)
from toyds.tasks.arithmetic import Problem
from toyds.tasks.arithmetic_traces import direct_completion, think_completion, untagged_completion

P = Problem(347, "+", 589, 3)  # 936
GOOD = think_completion(P)  # <think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer><eos>
WS = " \t\n\r"


# ------------------------------------------------------------------ accuracy

RIGHT_FIVE = [
    "<answer>5</answer>",
    "<answer>5</answer><eos>",
    "<answer> 5 </answer>",  # stripped
    "<answer>\n5\t</answer> \n<eos>\n",
    "<think>2+3=5</think><answer>5</answer><eos>",
    "<think>so 7</think>\n<answer>5</answer>",  # a wrong number while thinking is fine: outcome only
    "2+3=5;so 5 <answer>5</answer><eos>",  # untagged working before the block
    "so 5</think><answer>5</answer>",  # a lone </think> (a forced-<think> prompt): answer is outside
    "<think>a</think><think>b</think><answer>5</answer>",  # bad format, but the answer stands alone
]

WRONG_FIVE = {
    "<answer>6</answer>": "wrong",
    "<answer>5</answer><answer>5</answer>": "repeated block",
    "<answer>5</answer><answer>6</answer>": "hedged, right first",
    "<answer>6</answer><answer>5</answer>": "hedged, right last",
    "<answer>5 6</answer>": "two numbers in one block",
    "<answer>5,6</answer>": "two numbers with a comma",
    "<think>2+3=5;so 5</think>": "answer only in the thinking",
    "<think>2+3=5;so 5</think><eos>": "answer only in the thinking, then stop",
    "<think><answer>5</answer></think>": "answer nested in thinking",
    "<think>so <answer>5</answer>": "answer inside an unclosed think",
    "<answer><think>5</think></answer>": "thinking nested in the answer",
    "<answer>5<eos></answer>": "tag inside the block",
    "</answer>5<answer>": "tags out of order",
    "<answer>5": "never closed",
    "5</answer>": "never opened",
    "<answer><answer>5</answer>": "opened twice",
    "<answer>5</answer> 6": "trailing text",
    "<answer>5</answer> or 6": "trailing hedge",
    "<answer>5</answer>.": "trailing punctuation",
    "<answer>5</answer><eos>6": "text after <eos>",
    "<answer>5</answer><eos><eos>": "two <eos>",
    "<answer>5</answer></think>": "a tag after the answer",
    "6<eos><answer>5</answer>": "answer after the model stopped",
    "5": "no block at all",
    "so 5<eos>": "untagged",
    "": "empty",
    "<answer></answer>": "empty block",
    "<answer>   </answer>": "blank block",
    "<answer>٥</answer>": "Arabic-Indic five (int() would accept it)",
    "<answer>５</answer>": "fullwidth five (int() would accept it)",
    "<answer>⁵</answer>": "superscript five",
    "<answer>𝟓</answer>": "mathematical bold five (int() would accept it)",
    "<answer>+5</answer>": "explicit plus sign",
    "<answer>5.0</answer>": "decimal point",
    "<answer>5.</answer>": "trailing point",
    "<answer>05</answer>": "leading zero: a second spelling",
    "<answer>5e0</answer>": "exponent",
    "<answer>0x5</answer>": "hex",
    "<answer>five</answer>": "a word",
    "<answer>\u00a05</answer>": "non-ASCII space is not stripped",
    "<answer>-5</answer>": "wrong sign",
}


@pytest.mark.parametrize("text", RIGHT_FIVE)
def test_accuracy_known_good(text):
    assert accuracy_reward(text, 5) == 1.0
    assert accuracy_reward(text, "5") == 1.0  # the truth may be a str
    assert extract_answer(text) == "5"


@pytest.mark.parametrize("text", list(WRONG_FIVE), ids=list(WRONG_FIVE.values()))
def test_accuracy_known_bad(text):
    assert accuracy_reward(text, 5) == 0.0


def test_accuracy_on_real_completions():
    assert accuracy_reward(GOOD, 936) == 1.0 and accuracy_reward(GOOD, 935) == 0.0
    assert accuracy_reward(direct_completion(P), 936) == 1.0
    assert accuracy_reward(untagged_completion(P), 936) == 0.0  # "so 936" with no block
    assert accuracy_reward("<answer>-12</answer>", -12) == 1.0
    assert accuracy_reward("<answer>0</answer>", 0) == 1.0
    assert accuracy_reward("<answer>-0</answer>", 0) == 0.0
    assert accuracy_reward("<answer>1_0</answer>", 10) == 0.0  # int("1_0") == 10


def test_extract_answer_rules():
    assert extract_answer("<answer> 75 </answer><eos>") == "75"  # stripped, what describe_mistake shows
    assert extract_answer("<answer>5.0</answer>") == "5.0"  # well formed, just not an integer
    assert extract_answer("<answer></answer>") == ""
    for bad in ["<answer>1</answer><answer>2</answer>", "<think><answer>1</answer></think>",
                "<answer>1</answer>x", "</answer>1<answer>", "no block", "<think>x<answer>1</answer>"]:
        assert extract_answer(bad) is None, bad


def test_plain_integer_rule():
    good = ["0", "7", "-12", "936", "9" * 64]
    bad = ["", "-", "+5", "05", "-0", "5.0", "5 6", " 5", "٣", "３", "³", "1_0", "9" * 65, "--5", "5-"]
    assert all(is_plain_integer(s) for s in good)
    assert not any(is_plain_integer(s) for s in bad)
    assert is_plain_integer("9" * 65, max_digits=65) and is_plain_integer("-" + "9" * 3, max_digits=3)


def test_the_truth_must_be_a_plain_integer():
    assert accuracy_reward("<answer>936</answer>", " 936 ") == 1.0  # a str truth is stripped
    for bad in ["05", "5.0", "x", "", "٣"]:
        with pytest.raises(ValueError, match="not a plain integer"):
            accuracy_reward("<answer>5</answer>", bad)
    for bad in [5.0, None, True, [5]]:
        with pytest.raises(TypeError, match="truth must be an int"):
            accuracy_reward("<answer>5</answer>", bad)
    with pytest.raises(ValueError, match="max_digits"):
        accuracy_reward("<answer>5</answer>", 10**70)  # a truth no allowed answer could match
    for bad in [0, -1, 2.5, True]:
        with pytest.raises(ValueError, match="max_digits must be"):
            accuracy_reward("<answer>5</answer>", 5, max_digits=bad)


def test_max_digits_is_configurable():
    ten = "<answer>1234567890</answer>"
    assert accuracy_reward(ten, 1234567890) == 1.0
    assert accuracy_reward(ten, 1234567890, max_digits=10) == 1.0
    with pytest.raises(ValueError):
        accuracy_reward(ten, 1234567890, max_digits=9)  # the truth itself is too long


def test_enormous_numbers_are_scored_without_int_conversion():
    huge = "9" * 100_000
    text = f"<think>so {huge}</think><answer>{huge}</answer><eos>"
    t0 = time.perf_counter()
    assert accuracy_reward(text, 5) == 0.0  # over the default 64 digits: refused before any parsing
    assert accuracy_reward(text, huge, max_digits=100_000) == 1.0  # str truth: no int() anywhere
    assert accuracy_reward(text, "9" * 99_999 + "8", max_digits=100_000) == 0.0
    assert accuracy_reward(f"<answer>{'٩' * 100_000}</answer>", 5) == 0.0
    assert time.perf_counter() - t0 < 5.0  # milliseconds when linear; generous so a loaded machine cannot fail it


@pytest.mark.parametrize("junk", [
    "<think>" + "7+9=16;" * 150_000 + "</think><answer>936</answer><eos>",  # ~1 MB of honest thinking
    "<answer>" * 125_000,  # 1 MB of tags
    "<" * 1_000_000,
    "<think>" * 60_000 + "</think>" * 60_000 + "<answer>936</answer>",
    "<answer>" + " " * 1_000_000 + "936" + " " * 1_000_000 + "</answer>",
])
def test_a_megabyte_is_scored_without_a_quadratic_scan(junk):
    # linear scoring takes milliseconds here; a quadratic scan of 1 MB (10^12 steps) would take hours.
    # The bound is generous on purpose: a shared, loaded machine must not fail a test of behaviour.
    t0 = time.perf_counter()
    for _ in range(2):
        accuracy_reward(junk, 936), format_reward(junk), format_reward(junk, graded=True), extract_answer(junk)
    assert time.perf_counter() - t0 < 10.0


# -------------------------------------------------------------------- format

FORMAT_GOOD = [
    GOOD,
    "<think>x</think><answer>5</answer>",  # no <eos> is fine
    "  \n<think> a b </think>\n\n<answer> 5 </answer>\n<eos> \n",  # whitespace around and between
    "<think>so 7</think><answer>wrong but well formed</answer><eos>",  # format does not check the answer
]

FORMAT_BAD = {  # completion: (why, graded score worked by hand)
    "<answer>936</answer><eos>": ("no thinking", 0.25),
    "so 936</think><answer>936</answer>": ("missing <think>", 0.5),
    "<think></think><answer>936</answer>": ("empty thinking", 0.75),
    "<think>  </think><answer>936</answer>": ("blank thinking", 0.75),
    "<think>x</think><answer></answer>": ("empty answer", 0.75),
    "<think>x</think><answer>936</answer> junk": ("trailing text", 0.75),
    "<think>x</think><answer>936</answer><eos><eos>": ("two <eos>", 0.75),
    "<think>x</think><answer>936</answer><pad>": ("trailing pad", 0.75),
    "<think>x</think> so <answer>936</answer>": ("text between the blocks", 0.75),
    "a<think>x</think><answer>936</answer>": ("text before <think>", 0.75),
    "<eos><think>x</think><answer>936</answer>": ("<eos> first", 0.75),
    "<think>x<eos></think><answer>936</answer>": ("<eos> inside thinking", 0.75),
    "<think>x</think><answer>9<bos>36</answer>": ("a special inside the answer", 0.75),
    "<answer>936</answer><think>x</think>": ("blocks swapped", 0.25),  # the think block itself is well formed
    "</think>x<think><answer>936</answer>": ("think tags swapped", 0.25),
    "<think>x<answer>936</answer></think>": ("answer nested in thinking", 0.25),
    "<think>x</think><answer>9<think>y</think>36</answer>": ("thinking nested in the answer", 0.0),
    "<think>x</think><think>y</think><answer>936</answer>": ("two think blocks", 0.25),
    "<think>x</think><answer>935</answer><answer>936</answer>": ("two answer blocks", 0.5),
    "<think>x</think><answer>936": ("never closed", 0.75),
    "<think>x</think>": ("no answer", 0.5),
    "": ("empty", 0.0),
}


@pytest.mark.parametrize("text", FORMAT_GOOD)
def test_format_known_good(text):
    assert format_reward(text) == 1.0 and format_reward(text, graded=True) == 1.0


@pytest.mark.parametrize("text", list(FORMAT_BAD), ids=[why for why, _ in FORMAT_BAD.values()])
def test_format_known_bad_and_graded_by_hand(text):
    assert format_reward(text) == 0.0
    assert format_reward(text, graded=True) == FORMAT_BAD[text][1]


def test_strict_format_and_accuracy_agree_on_the_answer():
    # a completion in strict format always has an extractable answer
    for text in FORMAT_GOOD:
        assert extract_answer(text) is not None


# ---------------------------------------------------------- combined, batched


def test_combined_reward_by_hand():
    assert combined_reward(GOOD, 936) == 1.0 + 0.5 * 1.0
    assert combined_reward(direct_completion(P), 936) == 1.0 + 0.5 * 0.0  # right, no thinking
    assert combined_reward(GOOD, 935) == 0.0 + 0.5 * 1.0  # wrong, in format: less than right
    assert combined_reward(GOOD, 936, format_weight=1.0) == 2.0  # R1's plain sum
    assert combined_reward("<answer>936</answer>", 936, format_weight=0.2, graded=True) == pytest.approx(1.05)
    assert combined_reward("<answer>936</answer><answer>936</answer>", 936, format_weight=0.0) == 0.0
    for bad in [-0.1, float("nan"), float("inf"), "0.5", True]:
        with pytest.raises(ValueError, match="format_weight"):
            combined_reward(GOOD, 936, format_weight=bad)


def chat(text):
    return [{"role": "assistant", "content": text}]


def test_batched_forms_take_plain_and_chat_completions():
    texts = [GOOD, direct_completion(P), "<think>x</think><answer>935</answer>", "so 936"]
    answers = [936, 936, 936, "936"]
    want_acc, want_fmt = [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]
    for completions in (texts, [chat(t) for t in texts]):
        kw = dict(prompts=["<bos>347+589="] * 4, completion_ids=[[1]] * 4, trainer_state=None)  # TRL extras
        assert accuracy_reward_batch(completions=completions, answer=answers, **kw) == want_acc
        assert format_reward_batch(completions=completions, answer=answers, **kw) == want_fmt
        assert combined_reward_batch(completions=completions, answer=answers, **kw) == [1.5, 1.0, 0.5, 0.0]
    assert format_reward_batch([GOOD.replace("<think>", "", 1)], graded=True) == [0.5]
    assert accuracy_reward_batch(["<answer>1234567890</answer>"], [1234567890], max_digits=10) == [1.0]


def test_chat_completions_whose_thinking_a_parser_moved_out_still_score():
    """TRL (with a response schema) puts the thinking in reasoning_content and leaves only what followed
    </think> in content; the format reward must see the completion the model wrote, not 0 for every one."""
    parsed = [{"role": "assistant", "reasoning_content": "7+9=16;4+8+1=13;3+5+1=9;so 936",
               "content": "<answer>936</answer>"}]
    assert completion_text(parsed) == "<think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer>"
    assert format_reward_batch([parsed]) == [1.0] and accuracy_reward_batch([parsed], [936]) == [1.0]
    lfm = [{"role": "assistant", "thinking": "so 936", "content": "<answer>936</answer>"}]  # LFM2.5's field name
    assert combined_reward_batch([lfm], [936]) == [1.5]
    empty = [{"role": "assistant", "reasoning_content": "", "content": "<answer>936</answer>"}]
    assert format_reward_batch([empty]) == [0.0]  # an empty thinking block still earns no format reward


def test_r1_rewards_with_weights_are_the_combined_reward():
    from toyds.rl.reward_registry import R1, resolve
    from toyds.tasks.arithmetic import Arithmetic

    fns, weights = resolve(R1, Arithmetic())
    assert fns == [accuracy_reward_batch, format_reward_batch] and weights == [1.0, 0.5]
    texts = [GOOD, direct_completion(P), "<think>x</think><answer>935</answer>", "so 936"]
    parts = [fn(completions=texts, answer=[936] * 4) for fn in fns]
    weighted = [sum(w * p[i] for w, p in zip(weights, parts)) for i in range(4)]
    assert weighted == combined_reward_batch(texts, [936] * 4)


def test_batched_forms_score_junk_zero():
    junk = [None, 5, b"<answer>936</answer>", [], {"content": GOOD}, [{"role": "user", "content": GOOD}],
            [{"role": "assistant", "content": 5}], [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}],
            [GOOD]]
    assert accuracy_reward_batch(junk, [936] * len(junk)) == [0.0] * len(junk)
    assert format_reward_batch(junk) == [0.0] * len(junk)
    assert combined_reward_batch(junk, [936] * len(junk)) == [0.0] * len(junk)
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"


def test_batched_forms_reject_misuse():
    with pytest.raises(ValueError, match="one truth per completion"):
        accuracy_reward_batch([GOOD, GOOD], [936])
    with pytest.raises(ValueError, match="one truth per completion"):
        combined_reward_batch([GOOD], 936)
    with pytest.raises(TypeError, match="list of completions"):
        format_reward_batch(GOOD)  # a bare str would be scored character by character


# ------------------------------------------------------ property-based checks

FORMAT_RE = re.compile(r"[ \t\n\r]*<think>(.*)</think>[ \t\n\r]*<answer>(.*)</answer>[ \t\n\r]*(?:<eos>[ \t\n\r]*)?",
                       re.S)


def reference_format(text: str) -> float:
    """The strict format rule written as a regex plus counts (fine for short test strings)."""
    m = FORMAT_RE.fullmatch(text)
    if m is None or any(text.count(t) != 1 for t in ("<think>", "</think>", "<answer>", "</answer>")):
        return 0.0
    ok = all(g.strip(WS) and not any(tag in g for tag in SPECIALS) for g in m.groups())
    return float(ok)


def reference_accuracy(text: str, truth: int) -> float:
    """The accuracy rule written with split, independently of the module."""
    parts = text.split("<answer>")
    if len(parts) != 2 or text.count("</answer>") != 1 or "</answer>" not in parts[1]:
        return 0.0
    before, rest = parts
    inside, after = rest.split("</answer>")
    if after.strip(WS) not in ("", "<eos>") or "<eos>" in before:
        return 0.0
    if any(tag in inside for tag in SPECIALS):
        return 0.0
    after_last_think = before.split("<think>")
    if len(after_last_think) > 1 and "</think>" not in after_last_think[-1]:
        return 0.0
    return float(inside.strip(WS) == str(truth))  # str(int) is the one plain spelling


def test_the_references_agree_with_the_hand_worked_cases():
    assert all(reference_accuracy(t, 5) == 1.0 for t in RIGHT_FIVE)
    assert all(reference_accuracy(t, 5) == 0.0 for t in WRONG_FIVE)
    assert all(reference_format(t) == 1.0 for t in FORMAT_GOOD)
    assert all(reference_format(t) == 0.0 for t in FORMAT_BAD)


PIECES = ["<think>", "</think>", "<answer>", "</answer>", "<eos>", "<pad>", "5", "12", "-12", "0", "-", "+", ".",
          " ", "\n", "\t", "٥", "５", "⁵", "so ", ";", "<", ">", "/", "answer", "think", "\u00a0",
          "<think>2+3=5</think>", "<answer>5</answer>", "<answer>12</answer>"]  # whole blocks, so some soups score
TRUTHS = st.sampled_from([5, 12, -12, 0, 936])
tag_soup = st.lists(st.sampled_from(PIECES), max_size=10).map("".join)


@st.composite
def mutated(draw):
    """A good completion with a few random edits: inserted pieces, deletions, duplicated spans."""
    p = Problem(draw(st.integers(0, 999)), "+", draw(st.integers(0, 999)), 3)
    text = draw(st.sampled_from([think_completion, direct_completion, untagged_completion]))(p)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        edit = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if edit == "insert":
            text = text[:i] + draw(st.sampled_from(PIECES + [str(p.answer)])) + text[i:]
        elif edit == "delete":
            text = text[:i] + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text, p.answer


def check_all(text, truth):
    acc, fmt, graded = accuracy_reward(text, truth), format_reward(text), format_reward(text, graded=True)
    assert acc in (0.0, 1.0) and fmt in (0.0, 1.0) and graded in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert all(type(x) is float for x in (acc, fmt, graded))
    assert acc == reference_accuracy(text, truth), text
    assert fmt == reference_format(text), text
    assert graded >= fmt and (graded == 1.0) == (fmt == 1.0)
    assert combined_reward(text, truth) == acc + 0.5 * fmt
    said = extract_answer(text)
    assert said is None or isinstance(said, str)
    if fmt == 1.0:
        assert said is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=80), tag_soup), truth=TRUTHS)
def test_random_strings_never_raise_and_match_the_reference(text, truth):
    check_all(text, truth)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_completions_match_the_reference(case):
    check_all(*case)


@settings(max_examples=100, deadline=None)
@given(junk=st.one_of(st.none(), st.integers(), st.binary(max_size=20), st.lists(st.text(max_size=5), max_size=3),
                      st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
def test_non_strings_score_zero(junk):
    assert accuracy_reward_batch([junk], [5]) == [0.0]
    assert format_reward_batch([junk], graded=True) == [0.0]
    assert extract_answer(junk) is None
