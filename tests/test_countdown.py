"""Countdown-lite: the family worked by hand, the checker against hacks, the trace
readers against hand-labelled completions, and the corpus against the checker
(tasks/countdown.py and tasks/countdown_reading.py)."""

import itertools
import random
import time

import pytest

from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import format_reward_batch
from toyds.tasks import countdown as cd
from toyds.tasks import countdown_reading as cb
from toyds.tasks import countdown_reading as rules
from toyds.tasks.countdown import Candidate, Countdown

P = Countdown((8, 3, 1), 6)  # one solution: (8-3)+1
NUMS, T = P.numbers, P.target
GOOD = "<think>6-1=5 8x3=24 no,8-3=5-5=0 ok</think><answer>(8-3)+1</answer><eos>"


def acc(completion, numbers=NUMS, target=T):
    return rules.accuracy(completion, numbers, target)


# ------------------------------------------------------------------ the family


def test_family_worked_by_hand():
    fam = cd.family((8, 3, 1))
    # z=1: 8+3, 8-3, 8x3; z=3: 8+1, 8-1, 8x1; z=8: 3+1, 3-1, 3x1; each then +z or xz: 18
    assert len(fam) == 18 and cd.OPS2 == ("+", "x")
    assert Candidate(8, "-", 3, "+", 1) in fam and Candidate(3, "-", 8, "+", 1) not in fam
    assert [c.expression() for c in P.solutions()] == ["(8-3)+1"]
    assert P.difficulty == "1"
    c = Candidate(8, "x", 3, "+", 1)
    assert (c.inner, c.value, c.need(6)) == (24, 25, 5)
    assert c.head(6) == "6-1=5" and c.check(6) == "8x3=24 no"  # two digits: never a one-digit need
    assert Candidate(8, "-", 3, "+", 1).check(6) == "8-3=5-5=0 ok"
    assert Candidate(3, "+", 1, "+", 8).need(6) is None  # 6-8 < 0: nothing can be added to make 6
    m = Candidate(3, "+", 1, "x", 2)
    assert m.head(8) == "8:2=4" and m.check(8) == "3+1=4-4=0 ok" and m.value == 8
    assert Candidate(3, "+", 1, "x", 3).need(8) is None  # 3 does not divide 8
    assert Candidate(8, "+", 1, "+", 3).check(6) == "8+1=9-3=6 no"


def test_repeated_numbers_give_fewer_candidates():
    # 2,2,2: one distinct z and one distinct pair: (2+2), (2-2), (2x2), each +2 or x2
    assert len(cd.family((2, 2, 2))) == 6
    # (2+2)+2 = (2x2)+2 = 6 and (2+2)x2 = (2x2)x2 = 8
    assert Countdown((2, 2, 2), 6).difficulty == "2" and Countdown((2, 2, 2), 8).difficulty == "2"


def test_difficulty_counts_solutions():
    # (1,2,3) to 6, worked by hand: (2+1)+3, (3+1)+2, (3+2)+1 add up; (3x2)x1, (3x1)x2 and (2x1)x3 multiply;
    # (3-1)x3 would reuse 3, (2+1)x2 would reuse 2
    sols = {c.expression() for c in Countdown((1, 2, 3), 6).solutions()}
    assert sols == {"(2+1)+3", "(3+1)+2", "(3+2)+1", "(3x2)x1", "(3x1)x2", "(2x1)x3"}
    assert Countdown((1, 2, 3), 6).difficulty == "3+"
    assert [c.expression() for c in Countdown((9, 7, 5), 7).solutions()] == ["(9-7)+5"]
    assert Countdown((9, 7, 5), 7).difficulty == "1"


def test_search_trace_worked_by_hand():
    # 8,3,1 to 6: heads 6-3=3, 6-1=5, 6:3=2, 6:1=6 (8 cannot be added or divided out);
    # only 8-3 under 6-1=5 hits, so a trace ends '6-1=5 ...8-3=5-5=0 ok'
    seen = set()
    for seed in range(60):
        trace, hit = cd.search_trace(P, random.Random(seed))
        assert hit == Candidate(8, "-", 3, "+", 1) and trace.endswith("8-3=5-5=0 ok")
        assert "6-8" not in trace and "6:8" not in trace
        heads = {g.split(" ")[0] for g in trace.split(";")}
        assert heads <= {"6-3=3", "6-1=5", "6:3=2", "6:1=6"}
        seen.add(trace)
    assert "6-1=5 8-3=5-5=0 ok" in seen  # lucky: right first time
    assert max(t.count(" no") + t.count(" ok") for t in seen) >= 8  # unlucky: most of 12 tries
    # canonical order: heads by z in prompt order, + before x; inner ops + - x
    assert cd.search_trace(P, random.Random(0), shuffle=False)[0] == (
        "6-3=3 8+1=9-3=6 no,8-1=7-3=4 no,8x1=8-3=5 no;6:3=2 8+1=9-2=7 no,8-1=7-2=5 no,8x1=8-2=6 no;"
        "6-1=5 8+3=11 no,8-3=5-5=0 ok")
    # fixed heads: the canonical heads on every seed, the tries inside each head still shuffled
    fixed = {cd.search_trace(P, random.Random(seed), fixed_heads=True)[0] for seed in range(30)}
    assert {tuple(g.split(" ")[0] for g in t.split(";")) for t in fixed} == {("6-3=3", "6:3=2", "6-1=5")}
    assert len({t.split(";")[0] for t in fixed}) > 1 and all(t.endswith("8-3=5-5=0 ok") for t in fixed)


def test_every_sampled_problem_has_a_solution_and_the_splits_are_clean():
    pre = cd.sample_problems(600, seed=1)
    rl = cd.sample_problems(300, split="rl", seed=1)
    test = cd.sample_problems(120, split="test", unique=True)
    assert not set(pre) & set(test) and not set(pre) & set(rl) and not set(rl) & set(test)
    assert {cd.split_of(p) for p in pre} == {"pretrain"} and {cd.split_of(p) for p in test} == {"test"}
    assert all(p.solutions() and 1 <= p.target <= cd.MAX_TARGET for p in pre + rl + test)
    levels = [p.difficulty for p in test]
    assert levels[:3] == list(cd.LEVELS) and all(levels.count(lv) == 40 for lv in cd.LEVELS)
    assert pre == cd.sample_problems(600, seed=1) and pre != cd.sample_problems(600, seed=2)
    share = sum(cd.split_of(cd.random_problem(random.Random(i))) == "test" for i in range(3000)) / 3000
    assert 0.16 < share < 0.24


def test_bad_requests_name_the_bad_value():
    with pytest.raises(ValueError, match="split"):
        cd.sample_problems(3, split="dev")
    with pytest.raises(ValueError, match="levels"):
        cd.sample_problems(3, levels=("4",))
    with pytest.raises(ValueError, match="search_share"):
        cd.build_corpus([P], search_share=1.5)


# ------------------------------------------------------------------- the checker


def test_parse_expression_worked_by_hand():
    assert rules.parse_expression("(8-3)+1") == (6, [8, 3, 1])
    assert rules.parse_expression("8-3+1") == (6, [8, 3, 1])  # left to right
    assert rules.parse_expression("8-(3+1)") == (4, [8, 3, 1])
    assert rules.parse_expression("1+3x8") == (25, [1, 3, 8])  # x before +
    assert rules.parse_expression("(1+3)x8") == (32, [1, 3, 8])
    assert rules.parse_expression("((8))") == (8, [8])
    for bad in ("", "8-", "-8+3", "+8", "8--3", "(8-3", "8-3)", "8 - 3", "8*3", "8:3", "08", "8x", "()", "8(3)"):
        assert rules.parse_expression(bad) is None, bad


def test_right_answers_score_one():
    for c in [GOOD,
              "<think>(8-3)+1</think><answer>(8-3)+1</answer><eos>",
              "<answer>(8+1)-3</answer>",  # outside the trace family, still a solution
              "<answer>8-3+1</answer>",  # no parentheses needed: left to right
              "<answer>1+8-3</answer>",  # another order, another shape: the rule checks the outcome
              "<answer>(1-3)+8</answer>",  # a negative step is fine for the checker
              "<answer> (8-3)+1 </answer>"]:  # surrounding ASCII spaces stripped
        assert acc(c) == 1.0, c


HACKS = {
    "<answer>(8-2)+0</answer>": "numbers that were not given",
    "<answer>(3+3)</answer>": "a number used twice, one left out",
    "<answer>(8-3)+1+0</answer>": "an extra term (0 is not given)",
    "<answer>(8-3)+1-1+1</answer>": "reuses 1",
    "<answer>8-3+1x1</answer>": "one number used twice, still 6",
    "<answer>8-3</answer>": "a term missing",
    "<answer>6</answer>": "the target alone",
    "<answer>(8-3)+1</answer><answer>(8+1)-3</answer>": "two answers",
    "<answer>(8-3)+1 (8+1)-3</answer>": "two expressions in one block",
    "<answer>(8x3)+1</answer><answer>(8-3)+1</answer>": "hedged, right one last",
    "<think>6-1=5 8-3=5-5=0 ok;<answer>(8-3)+1</answer>": "answer only inside an unclosed <think>",
    "<think><answer>(8-3)+1</answer></think>": "answer nested in the thinking",
    "<think>6-1=5 8-3=5-5=0 ok</think>": "no answer block",
    "<answer>(８-3)+1</answer>": "fullwidth digit",
    "<answer>(٨-3)+1</answer>": "Arabic-Indic digit",
    "<answer>(08-3)+1</answer>": "leading zero",
    "<answer>(8-3)+1</answer> or (8+1)-3": "trailing hedge",
    "<answer>(8-3)+1=6</answer>": "an equation, not an expression",
    "<answer>(8-3)*1+1</answer>": "an operator outside the vocabulary",
    "<answer>-(3-8)+1</answer>": "unary minus",
    "<answer>" + "(" * 40 + "8" + ")" * 40 + "-3+1</answer>": "longer than any honest answer",
}


@pytest.mark.parametrize("completion", list(HACKS))
def test_hacks_score_zero(completion):
    assert acc(completion) == 0.0, HACKS[completion]


def test_checker_matches_a_reference_on_every_family_member():
    # reference: Python arithmetic on our own candidates (never on model text)
    for numbers in itertools.product(range(1, 5), repeat=3):
        for c in cd.family(numbers):
            ref = eval(c.expression().replace("x", "*"))
            assert c.value == ref
            assert rules.solves(c.expression(), numbers, ref)
            assert not rules.solves(c.expression(), numbers, ref + 1)


def test_checker_is_total_and_fast():
    for junk in [None, 3, b"<answer>6</answer>", "<answer>" + "9" * 1_000_000 + "</answer>", "\x00" * 100]:
        assert acc(junk) == 0.0
    big = "<think>6-1=5 " + "8x3=24 no," * 50_000 + "</think><answer>(8-3)+1</answer>"
    t = time.perf_counter()
    assert acc(big) == 1.0
    assert time.perf_counter() - t < 0.5


def test_batch_reward_matches_single():
    comps = ["<answer>(8-3)+1</answer>", "<answer>8-3</answer>", 17]
    assert rules.accuracy_batch(comps, [NUMS] * 3, [T] * 3) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="one numbers and one target"):
        rules.accuracy_batch(comps, [NUMS] * 2, [T] * 3)



def test_grpo_scores_countdown_through_its_columns():
    """GRPO's weighted_rewards hands each reward its own problem's columns (numbers, target)."""
    from toyds.rl.grpo import weighted_rewards

    q = Countdown((4, 2, 9), 7)  # (9-4)+2
    problems = [P, P, P, q, q]
    comps = [GOOD, "<think>(8-3)+1</think><answer>(8+3)+1</answer><eos>", "<answer>(8-3)+1</answer><eos>",
             "<think>7-2=5 9-4=5-5=0 ok</think><answer>(9-4)+2</answer><eos>", GOOD]
    total, per_fn = weighted_rewards([rules.accuracy_batch, format_reward_batch], [1.0, 0.5], comps, problems)
    # right and formatted: 1 + 0.5; formatted, wrong: 0.5; right, no think block: 1; P's answer for q: 0.5
    assert total.tolist() == [1.5, 0.5, 1.0, 1.5, 0.5]
    assert per_fn["accuracy_batch"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]


# ------------------------------------------------------------- reading the thinking


def test_parse_group_rebuilds_the_tried_expressions():
    assert cb.parse_group("6-1=5 8+3=11 no,8-3=5-5=0 ok") == [("(8+3)+1", "no"), ("(8-3)+1", "ok")]
    assert cb.parse_group("6:3=2 8-1=7-2=5 no") == [("(8-1)x3", "no")]  # ':' in the head undoes an outer x
    assert cb.parse_group("6-1=5 8-3=4-5=-1 no") == [("(8-3)+1", "no")]  # a slip in the working: still (8-3)+1
    assert cb.parse_group("6-1=5 8-3=5") == [("(8-3)+1", None)]  # worked out, never checked
    assert cb.parse_group("(8+1)-3") == [("(8+1)-3", None)]  # a bare guess
    assert cb.parse_group("6=5 8 no") == [("8 no", "no")]  # no shape: kept as it is, solves nothing


HAND = [
    # completion, tries, verifies, backtracks, first right, accuracy, oks, true oks, wrong checked, caught
    (GOOD, 2, True, True, False, 1.0, 1, 1, 1, 1),
    ("<think>6-1=5 8-3=5-5=0 ok</think><answer>(8-3)+1</answer><eos>", 1, True, False, True, 1.0, 1, 1, 0, 0),
    ("<think>(8x3)+1</think><answer>(8x3)+1</answer><eos>", 1, False, False, False, 0.0, 0, 0, 0, 0),
    # a false "ok": the check wrote 0 where 8+3-5 is 6
    ("<think>6-1=5 8+3=5-5=0 ok</think><answer>(8+3)+1</answer><eos>", 1, True, False, False, 0.0, 1, 0, 1, 0),
    # a false "no" on the right try, then a second group that ends in a false "ok"
    ("<think>6-1=5 8-3=5-5=1 no;6-3=3 8-1=3-3=0 ok</think><answer>(8-1)+3</answer><eos>",
     2, True, True, True, 0.0, 1, 0, 1, 0),
    ("<answer>(8-3)+1</answer><eos>", 0, False, False, False, 1.0, 0, 0, 0, 0),
]


@pytest.mark.parametrize("row", HAND)
def test_behaviour_on_hand_labelled_completions(row):
    text, tries, verifies, backtracks, first, accuracy, oks, true_oks, wrong, caught = row
    b = cb.behaviour(text, P)
    assert (b.tries, b.verifies, b.backtracks, b.first_correct, b.accuracy) == (tries, verifies, backtracks, first,
                                                                                  accuracy)
    assert (b.oks, b.true_oks, b.wrong_checked, b.caught) == (oks, true_oks, wrong, caught)
    assert b.length == len(Tokenizer().encode(text))


def test_summary_pools_precision_and_recall_by_hand():
    m = cb.measure([P] * len(HAND), [row[0] for row in HAND])
    # verdicts "ok": rows 1, 2, 4, 5 -> 4, of which rows 1 and 2 are right -> precision 2/4
    assert m["verify_precision"] == pytest.approx(2 / 4)
    # wrong tries in checking completions: row 1 (caught), row 4 (missed), row 5 (missed) -> recall 1/3
    assert m["verify_recall"] == pytest.approx(1 / 3)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["verify_rate"] == pytest.approx(4 / 6) and m["backtrack_rate"] == pytest.approx(2 / 6)
    assert m["first_try_accuracy"] == pytest.approx(2 / 6)
    assert m["mean_tries"] == pytest.approx(7 / 6)
    # first try wrong: rows 1, 3, 4, 6 -> one backtracked; first try right: rows 2, 5 -> one backtracked
    assert m["backtrack_if_first_wrong"] == pytest.approx(1 / 4)
    assert m["backtrack_if_first_right"] == pytest.approx(1 / 2)
    assert set(m["by_difficulty"]) == {"1"} and m["by_difficulty"]["1"]["n"] == 6
    assert cb.summarise([])["verify_precision"] is None


# ------------------------------------------------------------------- the corpus


def test_corpus_is_right_in_the_vocabulary_and_mixed():
    problems = cd.sample_problems(400, seed=3)
    corpus = cd.build_corpus(problems, search_share=0.4, seed=3)
    tok = Tokenizer()
    m = cb.measure(problems, [c for _, c in corpus])
    assert m["accuracy"] == 1.0  # every corpus completion solves its problem
    assert m["verify_precision"] == 1.0 and m["verify_recall"] == 1.0  # and every check is right
    assert 0.33 < m["verify_rate"] < 0.47
    for prompt, completion in corpus:
        tok.encode(prompt + completion)  # raises on any character outside the vocabulary
    # a search trace stops at its first hit, and tries no candidate twice
    rng = random.Random(0)
    for p in problems[:200]:
        trace, hit = cd.search_trace(p, rng)
        tries = cb.parse_tries(f"<think>{trace}</think>", p.numbers, p.target)
        assert [t.correct for t in tries] == [False] * (len(tries) - 1) + [True]
        assert [t.verdict for t in tries] == ["no"] * (len(tries) - 1) + ["ok"]
        assert len({t.expression for t in tries}) == len(tries) and hit.value == p.target
