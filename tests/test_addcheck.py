"""Addition with optional checks: the three styles worked by hand, the corpus mix, and the reader."""

import random

import pytest

from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import accuracy_reward, format_reward
from toyds.tasks import addcheck
from toyds.tasks.arithmetic import Problem, sample_problems
from toyds.tasks.arithmetic_traces import trace_answer

P = Problem(347, "+", 589, 3)  # 936


def test_styles_worked_by_hand():
    rng = random.Random(0)
    assert addcheck.completion(P, "plain", rng) == \
        "<think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer><eos>"
    assert addcheck.completion(P, "checked", rng) == \
        "<think>7+9=16;4+8+1=13;3+5+1=9;so 936;check 936-589=347 ok</think><answer>936</answer><eos>"
    assert addcheck.check(P, 926) == "check 926-589=337 no"


def test_a_caught_slip_is_one_column_off_and_then_redone():
    for seed in range(50):
        text = addcheck.completion(P, "caught", random.Random(seed))
        first, _, redo = text.partition(";wait;")
        slipped = first.removeprefix("<think>").split(";check")[0]
        said = trace_answer(slipped)
        assert said != 936 and " no" in first  # the slip changed the answer and the check saw it
        assert redo.startswith("7+9=16;4+8+1=13;3+5+1=9;so 936</think>")
        assert accuracy_reward(text, 936) == 1.0 and format_reward(text) == 1.0
        assert addcheck.has_check(text)


def test_corpus_mix_and_vocabulary():
    problems = sample_problems(2000, digits=(1, 2, 3), seed=0)
    corpus = addcheck.build_corpus(problems, addcheck.CheckMix(0.8, 0.1, 0.1), seed=0)
    tok = Tokenizer()
    for prompt, completion in corpus:
        tok.encode(prompt + completion)
    checks = sum(addcheck.has_check(c) for _, c in corpus) / len(corpus)
    assert 0.16 < checks < 0.24
    assert all(accuracy_reward(c, p.answer) == 1.0 and format_reward(c) == 1.0 for p, (_, c) in zip(problems, corpus))


def test_has_check_reads_only_before_the_answer():
    assert not addcheck.has_check("<think>7+9=16;so 16</think><answer>16</answer>")
    assert addcheck.has_check("<think>so 16;check 16-9=7 ok</think><answer>16</answer>")
    assert not addcheck.has_check("<answer>16</answer> check 16-9=7 ok")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="addition"):
        addcheck.completion(Problem(5, "x", 3, 1), "plain", random.Random(0))
    with pytest.raises(ValueError, match="style"):
        addcheck.completion(P, "shouty", random.Random(0))
    with pytest.raises(ValueError, match="CheckMix"):
        addcheck.CheckMix(-1, 0, 0)


def test_measure_worked_by_hand():
    texts = ["<think>7+9=16;4+8+1=13;3+5+1=9;so 936</think><answer>936</answer><eos>",  # right, no check
             "<think>so 926;check 926-589=337 no</think><answer>926</answer><eos>"]  # wrong, checked
    m = addcheck.measure([P, P], texts)
    tok = Tokenizer()
    assert m["accuracy"] == 0.5 and m["check_rate"] == 0.5
    assert m["mean_length"] == (len(tok.encode(texts[0])) + len(tok.encode(texts[1]))) / 2
    assert addcheck.measure([], []) == {"accuracy": 0.0, "check_rate": 0.0, "mean_length": 0.0}
