"""Countdown-lite's easy level (tasks/countdown_easy.py): two-number sums worked by hand, their
traces read back by countdown_reading, the splits and the level balance."""

import random

import pytest

from toyds.core.tokenizer import Tokenizer
from toyds.tasks import countdown_reading as cb
from toyds.tasks.countdown import Countdown
from toyds.tasks.countdown_easy import EASY, CountdownEasy, Pair, all_pairs, pair_guess, pair_search
from toyds.tasks.registry import make_task

P = Pair((7, 8), 15)  # one solution: 8+7


def test_pair_worked_by_hand():
    assert P.text == "7,8 to 15" and P.prompt() == "<bos>7,8 to 15:"
    assert P.tries() == [("8+7", 15), ("8-7", 1), ("8x7", 56)]  # the larger number first
    assert P.solutions() == ["8+7"] and P.difficulty == EASY
    assert Pair((2, 2), 4).solutions() == ["2+2", "2x2"]
    assert pair_guess(P, random.Random(0)) == "<think>8+7</think><answer>8+7</answer><eos>"


def test_pair_search_checks_each_try_and_stops_at_the_first_hit():
    seen = {pair_search(P, random.Random(seed)) for seed in range(40)}
    # every order of the tries, cut at the hit; each try worked as by hand
    hit, miss1, miss2 = "8+7=15-15=0 ok", "8-7=1-15=-14 no", "8x7=56-15=41 no"
    assert seen == {f"<think>{t}</think><answer>8+7</answer><eos>"
                    for t in (hit, f"{miss1},{hit}", f"{miss2},{hit}", f"{miss1},{miss2},{hit}", f"{miss2},{miss1},{hit}")}
    # a result with more digits than the target is 'no' without a subtraction (as in Countdown-lite)
    assert any("4x3=12 no," in pair_search(Pair((4, 3), 7), random.Random(s)) for s in range(40))
    assert any("3x2=6-5=1 no," in pair_search(Pair((3, 2), 5), random.Random(s)) for s in range(40))


def test_the_reader_counts_two_number_tries():
    assert cb.parse_group("8-7=1-15=-14 no,8+7=15-15=0 ok", two_numbers=True) == [("8-7", "no"), ("8+7", "ok")]
    assert cb.parse_group("8+7=15-15=0 ok", two_numbers=True) == [("8+7", "ok")]
    assert cb.parse_group("8+7", two_numbers=True) == [("8+7", None)]  # a guess
    # three numbers: a head that came out with a verdict still heads the tries after it, as before
    assert cb.parse_group("2-3=-1 no,2x1=2-1=1 no,2-1=1-1=0 ok") == [("no", None), ("(2x1)+3", "no"), ("(2-1)+3", "ok")]
    b = cb.behaviour("<think>8-7=1-15=-14 no,8+7=15-15=0 ok</think><answer>8+7</answer><eos>", P)
    assert (b.tries, b.verifies, b.backtracks, b.first_correct, b.accuracy, b.oks, b.true_oks) == (2, True, True, False,
                                                                                                    1.0, 1, 1)
    g = cb.behaviour("<think>8x7</think><answer>8x7</answer><eos>", P)  # a wrong guess, unchecked
    assert (g.tries, g.verifies, g.accuracy) == (1, False, 0.0)
    assert cb.accuracy("<answer>7+8</answer>", P.numbers, 15) == 1.0  # any order the checker accepts
    assert cb.accuracy("<answer>(8+7)x1</answer>", P.numbers, 15) == 0.0  # a number not given


def test_splits_hold_every_sum_once():
    splits = {s: all_pairs(s) for s in ("pretrain", "rl", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"pretrain": 34, "rl": 12, "test": 35}
    every = [p for v in splits.values() for p in v]
    assert {(*p.numbers, p.target) for p in every} == {(a, b, a + b) for a in range(1, 10) for b in range(1, 10)}
    with pytest.raises(ValueError, match="split must be one of .* got 'train'"):
        all_pairs("train")


def test_sample_visits_the_levels_in_turn_and_keeps_the_test_split_apart():
    task = make_task("countdown_easy")
    test = task.sample(120, "test", unique=True)
    assert [task.level(p) for p in test[:8]] == [EASY, "1", "2", "3+"] * 2
    assert sum(isinstance(p, Pair) for p in test) == 30 and len(set(test)) == 120
    pre = set(task.sample(400, "train", seed=1))
    assert not pre & set(test) and any(isinstance(p, Pair) for p in pre)
    with pytest.raises(ValueError, match="asked for 36 distinct two-number test problems; the split holds 35"):
        task.sample(144, "test", unique=True)


def test_corpus_is_right_in_the_vocabulary_and_mixed():
    task = CountdownEasy()
    problems = task.sample(800, "train", seed=2)
    corpus = task.search_corpus(problems, 0.4, seed=2)
    assert [prompt for prompt, _ in corpus] == [p.prompt() for p in problems]
    m = task.measure(problems, [c for _, c in corpus])
    assert m["accuracy"] == 1.0 and m["verify_precision"] == 1.0 and m["verify_recall"] == 1.0
    assert set(m["by_difficulty"]) == {EASY, "1", "2", "3+"}
    assert 0.3 < m["by_difficulty"][EASY]["verify_rate"] < 0.5
    assert m["by_difficulty"][EASY]["mean_length"] < m["by_difficulty"]["1"]["mean_length"]
    tok = Tokenizer()
    for prompt, completion in corpus:
        tok.encode(prompt + completion)  # raises on any character outside the vocabulary
    assert task.measure(problems[:1], [task.worked(problems[0])])["verify_rate"] == 1.0


def test_parse_reads_two_or_three_numbers_and_names_bad_text():
    task = CountdownEasy()
    assert task.parse("8,7 to 15:") == Pair((8, 7), 15)
    assert task.parse("8,3,1 to 6") == Countdown((8, 3, 1), 6)
    for bad in ("8 to 5", "8,0 to 5", "8,3 to 19", "8,3 to 05", "8,3,1,2 to 5", "8,3 to ١٥"):
        with pytest.raises(ValueError, match="cannot read .* as a"):
            task.parse(bad)
