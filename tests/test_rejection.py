"""toyds/distill/rejection.py: the rules keep what is right; only text passes from teacher to student."""

import pytest
import torch

import toyds.distill.rejection as rejection
from toyds.core.model import GPT, make_config
from toyds.distill.rejection import rejection_sample
from toyds.rl.rewards import accuracy_reward, format_reward
from toyds.tasks.arithmetic import Arithmetic, Problem, sample_problems

TASK = Arithmetic(digits=(1,), ops=("+", "-", "x"))

P1, P2, P3 = Problem(3, "+", 4, 1), Problem(5, "x", 2, 1), Problem(9, "-", 1, 1)
GOOD1 = "<think>3+4=7;so 7</think><answer>7</answer><eos>"
FAKE_TEXTS = [
    GOOD1,  # right and formatted: kept
    "<answer>7</answer><eos>",  # right, no thinking: out of format
    GOOD1,  # the same text again
    "<think>5x2=11;so 11</think><answer>11</answer><eos>",  # formatted, wrong
    "<think>5x2=10;so 10</think><answer>10</answer><eos>",  # kept
    "<think>5x2=10;so 10</think><answer>10</answer>",  # right and formatted but unfinished (no <eos>)
    "<think>9-1=8;so 8</think><answer>9</answer><eos>",  # wrong
    "8<eos>",  # no answer block
    "<think>9-1=8</think><answer>8</answer><eos>junk",  # text after the answer
]


@pytest.fixture
def fake_teacher(monkeypatch):
    calls = []

    def fake_complete(model, problems, temperature=0.0, samples=1, max_new_tokens=None, seed=0, prefix=""):
        calls.append(dict(problems=problems, temperature=temperature, samples=samples, seed=seed, prefix=prefix))
        assert len(problems) * samples == len(FAKE_TEXTS)
        return list(FAKE_TEXTS)

    monkeypatch.setattr(rejection, "complete", fake_complete)
    return calls


def test_rejection_sampling_keeps_only_what_the_reward_accepts(fake_teacher):
    pairs, stats = rejection_sample(None, TASK, [P1, P2, P3], k=3, temperature=0.8, seed=5)
    assert fake_teacher[0]["samples"] == 3 and fake_teacher[0]["temperature"] == 0.8 and fake_teacher[0]["seed"] == 5
    assert pairs == [("<bos>3+4=", GOOD1), ("<bos>3+4=", GOOD1),
                     ("<bos>5x2=", "<think>5x2=10;so 10</think><answer>10</answer><eos>")]
    assert all(accuracy_reward(c, p.answer) == 1 and format_reward(c) == 1
               for (_, c), p in zip(pairs, [P1, P1, P2]))
    assert stats == {"samples": 9, "kept": 3, "keep_rate": 3 / 9, "problems": 3, "problems_kept": 2,
                     "coverage": 2 / 3, "pairs": 3}


def test_rejection_sampling_dedupe_and_custom_filter(fake_teacher):
    pairs, stats = rejection_sample(None, TASK, [P1, P2, P3], k=3, dedupe=True)
    assert len(pairs) == 2 and stats["kept"] == 3 and stats["pairs"] == 2
    # a caller's own filter: answer right, format not required
    pairs, stats = rejection_sample(None, TASK, [P1, P2, P3], k=3, keep=lambda c, p: accuracy_reward(c, p.answer) == 1)
    assert [c for _, c in pairs] == [GOOD1, "<answer>7</answer><eos>", GOOD1, FAKE_TEXTS[4], FAKE_TEXTS[5]]
    assert stats["kept"] == 5 and stats["problems_kept"] == 2
    with pytest.raises(ValueError, match="k .* must be an integer >= 1, got 0"):
        rejection_sample(None, TASK, [P1], k=0)


def test_rejection_sampling_with_a_real_model_passes_only_text():
    torch.manual_seed(0)
    teacher = GPT(make_config("tiny", block_size=24))
    problems = sample_problems(3, digits=(1,))
    pairs, stats = rejection_sample(teacher, TASK, problems, k=2, max_new_tokens=8, keep=lambda c, p: True, prefix="<think>")
    assert stats["kept"] == stats["samples"] == len(pairs) == 6 and stats["coverage"] == 1.0
    assert [p for p, _ in pairs] == [q.prompt() for q in problems for _ in range(2)]
    assert all(isinstance(c, str) and c.startswith("<think>") for _, c in pairs)
    # an untrained teacher writes junk: the default filter keeps only what the reward accepts
    pairs, stats = rejection_sample(teacher, TASK, problems, k=2, max_new_tokens=8)
    assert stats["kept"] == len(pairs) and all(format_reward(c) == 1 for _, c in pairs)


