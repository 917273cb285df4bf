import random

import pytest

from toyds.arithmetic import (
    CorpusMix,
    Problem,
    build_corpus,
    is_heldout,
    random_problem,
    sample_problems,
    think_completion,
    trace,
    trace_answer,
)
from toyds.tokenizer import Tokenizer


def test_traces_worked_by_hand():
    assert trace(Problem(347, "+", 589, 3)) == "7+9=16;4+8+1=13;3+5+1=9;so 936"
    assert trace(Problem(347, "-", 189, 3)) == "17-9=8;14-1-8=5;3-1-1=1;so 158"
    assert trace(Problem(347, "x", 8, 3)) == "7x8=56;4x8+5=37;3x8+3=27;so 2776"
    assert trace(Problem(5, "+", 7, 1)) == "5+7=12;so 12"
    assert trace(Problem(1000, "-", 999, 4)) == "10-9=1;10-1-9=0;10-1-9=0;1-1-0=0;so 1"


@pytest.mark.parametrize("op", ["+", "-", "x"])
@pytest.mark.parametrize("digits", [1, 2, 3, 4])
def test_every_trace_follows_to_the_right_answer(op, digits):
    rng = random.Random(digits)
    for _ in range(300):
        p = random_problem(rng, digits, op)
        assert p.answer == eval(f"{p.a}{'*' if op == 'x' else op}{p.b}")  # the reference, on our own text only
        assert trace_answer(trace(p)) == p.answer  # the column steps alone give the answer
        assert trace(p).endswith(f"so {p.answer}")
        assert p.answer >= 0 and len(str(p.a)) == digits


def test_train_and_heldout_never_overlap():
    kw = dict(digits=(1, 2, 3, 4), ops=("+", "-", "x"))
    train = set(sample_problems(5000, seed=1, **kw))
    test = set(sample_problems(2000, split="test", seed=2, unique=True, **kw))
    assert train and test and not train & test
    assert all(is_heldout(p) for p in test) and not any(is_heldout(p) for p in train)


def test_heldout_share_is_about_a_fifth():
    rng = random.Random(0)
    ps = [random_problem(rng, 3, "+") for _ in range(5000)]
    assert 0.17 < sum(map(is_heldout, ps)) / len(ps) < 0.23


def test_sampling_is_seeded_and_balanced():
    a = sample_problems(90, digits=(1, 2, 3), ops=("+", "-", "x"), seed=7)
    assert a == sample_problems(90, digits=(1, 2, 3), ops=("+", "-", "x"), seed=7)
    assert a != sample_problems(90, digits=(1, 2, 3), ops=("+", "-", "x"), seed=8)
    assert sorted({(p.digits, p.op) for p in a}) == sorted((d, o) for d in (1, 2, 3) for o in "+-x")
    assert sum(p.digits == 2 for p in a) == 30


def test_unique_stops_when_a_cell_runs_out():
    one_digit = sample_problems(1000, digits=(1,), ops=("+",), split="test", unique=True)
    assert 10 < len(one_digit) < 35 and len(set(one_digit)) == len(one_digit)


def test_corpus_mix_and_encoding():
    ps = sample_problems(2000, digits=(1, 2, 3), seed=3)
    pairs = build_corpus(ps, CorpusMix(direct=0.5, think=0.3, untagged=0.2), seed=0)
    tok = Tokenizer()
    kinds = {"direct": 0, "think": 0, "untagged": 0}
    for (prompt, completion), p in zip(pairs, ps):
        assert prompt == f"<bos>{p.text}=" and completion.endswith("<eos>")
        tok.encode(prompt + completion)  # every character is in the vocabulary
        kind = "think" if completion.startswith("<think>") else "direct" if completion.startswith("<answer>") else "untagged"
        kinds[kind] += 1
    assert abs(kinds["direct"] / 2000 - 0.5) < 0.05 and abs(kinds["untagged"] / 2000 - 0.2) < 0.05
    assert think_completion(Problem(12, "+", 9, 2)) == "<think>2+9=11;1+0+1=2;so 21</think><answer>21</answer><eos>"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(digits=(5,)), "digits must be integers in 1..4, got 5"),
        (dict(ops=("/",)), "unknown operation '/'"),
        (dict(split="val"), "split must be 'train' or 'test'"),
    ],
)
def test_bad_requests(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_problems(10, **kwargs)
    with pytest.raises(ValueError, match="unknown corpus mix"):
        build_corpus([], "mixed")
    with pytest.raises(ValueError, match="CorpusMix.think must be a share >= 0, got -1"):
        CorpusMix(think=-1)


def test_one_syntax_for_problems_on_every_command_line():
    from toyds.arithmetic import parse_digits, parse_ops

    assert parse_digits("1,2,3") == (1, 2, 3) and parse_digits(" 4 ") == (4,)
    assert parse_ops("+,-,x") == ("+", "-", "x") and parse_ops("x") == ("x",)
    for bad, match in (("1-3", "separated by commas"), ("5", r"digits must be integers in 1..4, got 5"),
                       ("1,1", "repeats")):
        with pytest.raises(ValueError, match=match):
            parse_digits(bad)
    for bad in ("+-x", "+,*", "+,+", ""):
        with pytest.raises(ValueError, match="separated by commas, once each, e.g. \\+,-,x"):
            parse_ops(bad)
