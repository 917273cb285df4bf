import random
import zlib

import pytest

from toyds.core.tokenizer import Tokenizer
from toyds.tasks.arithmetic import Problem, cell_size, is_heldout, random_problem, sample_problems, split_size
from toyds.tasks.arithmetic_traces import CorpusMix, build_corpus, think_completion, trace, trace_answer


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
    test = set(sample_problems(2000, split="test", seed=2, unique=True, allow_fewer=True, **kw))
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


def test_cell_sizes_counted_by_hand():
    # 1-digit "+": a and b in 0..9, 100 problems, of which these 21 hash into the held-out bucket
    heldout = [Problem(a, "+", b, 1) for a in range(10) for b in range(10) if is_heldout(Problem(a, "+", b, 1))]
    assert cell_size(1, "+") == 100 and split_size(1, "+", True) == len(heldout) == 21
    assert cell_size(1, "-") == 55 and cell_size(2, "x") == 90 * 8 and cell_size(4, "+") == 9000**2
    for d, op in [(1, "+"), (1, "-"), (1, "x"), (2, "+"), (2, "-"), (2, "x"), (3, "x")]:
        test, train = split_size(d, op, True), split_size(d, op, False)
        assert test + train == cell_size(d, op)
        assert test >= cell_size(d, op) // 10  # what sample_problems relies on to skip listing big cells


def test_a_big_request_gets_every_problem_it_asked_for():
    # a miss counter that never reset dropped the only cell after 2,000 misses in all: 7,841 came back
    assert len(sample_problems(100_000, digits=(3,))) == 100_000
    # 1,000 distinct held-out problems per digit count: 962 came back
    ps = sample_problems(3000, digits=(1, 2, 3), split="test", unique=True, allow_fewer=True)
    assert len(ps) == 3000 == len(set(ps)) and all(map(is_heldout, ps))


def test_a_small_cell_gives_exactly_what_it_holds_when_allowed():
    one_digit = sample_problems(1000, digits=(1,), ops=("+",), split="test", unique=True, allow_fewer=True)
    assert sorted(one_digit, key=lambda p: p.text) == sorted(
        (Problem(a, "+", b, 1) for a in range(10) for b in range(10) if is_heldout(Problem(a, "+", b, 1))),
        key=lambda p: p.text)
    times = sample_problems(3000, digits=(2,), ops=("x",), split="test", unique=True, allow_fewer=True)
    assert len(set(times)) == len(times) == split_size(2, "x", True) == 142
    # the other cells make up what the small one lacks
    mixed = sample_problems(300, digits=(1, 2, 3), split="test", unique=True, allow_fewer=True)
    assert len(mixed) == 300 and sum(p.digits == 1 for p in mixed) == 21


def test_a_cell_that_cannot_supply_raises_before_sampling():
    with pytest.raises(ValueError, match=r"the test split holds only 21 distinct 1-digit '\+' problems, but 34 "
                                         r"were asked of that cell \(n=100 over 3 cells\).*allow_fewer=True"):
        sample_problems(100, digits=(1, 2, 3), split="test", unique=True)
    with pytest.raises(ValueError, match="the train split holds only 79 distinct 1-digit '\\+' problems, but 80"):
        sample_problems(80, digits=(1,), unique=True)
    assert len(sample_problems(79, digits=(1,), unique=True)) == 79  # exactly what it holds is fine
    with pytest.raises(ValueError, match="n must be a whole number >= 0, got -1"):
        sample_problems(-1)


def test_existing_seeds_draw_what_they_always_drew():
    # fingerprints taken with the sampler the README's figures were measured with
    def fingerprint(ps):
        return zlib.crc32(",".join(p.text for p in ps).encode())

    assert fingerprint(sample_problems(20000, digits=(1, 2, 3), seed=0)) == 805875633
    held_out = sample_problems(300, digits=(1, 2, 3), split="test", unique=True, allow_fewer=True)
    assert fingerprint(held_out) == 3566410134
    assert fingerprint(sample_problems(1000, digits=(1, 2, 3, 4), ops=("+", "-", "x"), split="test", unique=True,
                                       allow_fewer=True)) == 3744965140


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
    from toyds.tasks.arithmetic import parse_digits, parse_ops

    assert parse_digits("1,2,3") == (1, 2, 3) and parse_digits(" 4 ") == (4,)
    assert parse_ops("+,-,x") == ("+", "-", "x") and parse_ops("x") == ("x",)
    for bad, match in (("1-3", "comma-separated digit counts from 1 to 4, got '1-3'"), ("5", "got '5'"),
                       ("1,1", "repeats")):
        with pytest.raises(ValueError, match=match):
            parse_digits(bad)
    for bad, match in (("+-x", r"comma-separated operations from \+ - x, got '\+-x'"), ("+,*", "got"), ("+,+", "repeats"),
                       ("", "got ''")):
        with pytest.raises(ValueError, match=match):
            parse_ops(bad)
