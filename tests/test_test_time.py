"""toyds/evaluate/test_time.py: the vote and best-of-N worked by hand, and the curve on samples we wrote."""

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.evaluate import test_time
from toyds.evaluate.test_time import best_of, majority_vote, sample_many, selection_curve
from toyds.tasks.arithmetic import Problem
from toyds.tasks.registry import make_task


def test_majority_vote_by_hand():
    assert majority_vote(["7", None, "8", "8"]) == 2  # "8" has two votes; its first holder is sample 2
    assert majority_vote(["8", "7", "7", "8"]) == 1  # a tie: "7" reached two votes first (sample 2 before 3)
    assert majority_vote([None, None]) == 0  # nobody answered: keep the first
    assert majority_vote(["5"]) == 0
    assert majority_vote([None, "3", None]) == 1  # abstentions never win


def test_best_of_by_hand():
    assert best_of([0.2, 0.9, 0.9]) == 1  # the earliest of the tied best
    assert best_of([-3.0]) == 0
    with pytest.raises(ValueError, match="at least one score"):
        best_of([])


A = "<think>...</think><answer>{}</answer><eos>"


def test_selection_curve_on_samples_written_by_hand(monkeypatch):
    task = make_task("arithmetic")
    p1, p2 = Problem(2, "+", 3, 1), Problem(12, "+", 30, 2)  # answers 5 and 42
    texts = [[A.format(4), A.format(5), A.format(5), A.format(4)],  # p1: wrong, right, right, wrong
             [A.format(40), A.format(41), A.format(40), A.format(42)]]  # p2: only the last is right
    logps = [[-0.1, -0.5, -0.2, -0.9], [-0.3, -0.1, -0.2, -0.05]]
    lengths = [[10, 12, 12, 10], [20, 20, 20, 22]]
    monkeypatch.setattr(test_time, "sample_many", lambda *a, **k: (texts, logps, lengths))

    class Judge:  # a learned reward model that likes 40 and 4 (the wrong answers)
        def score(self, full):
            return [0.9 if ">40<" in t or ">4<" in t else 0.1 for t in full]

    out = selection_curve(None, task, [p1, p2], (1, 2, 4), max_new_tokens=8, reward_model=Judge())
    assert out["n"] == [1, 2, 4]
    assert out["tokens"] == [(10 + 20) / 2, (22 + 40) / 2, (44 + 82) / 2]  # N samples cost their lengths
    acc = {name: s["accuracy"] for name, s in out["selectors"].items()}
    # N=1: every selector keeps sample 0 (wrong for both)
    assert {name: a[0] for name, a in acc.items()} == dict.fromkeys(("majority", "oracle", "reward_model", "logprob"), 0.0)
    # the oracle is pass@N: p1 solved from N=2, p2 at N=4
    assert acc["oracle"] == [0.0, 0.5, 1.0]
    # the vote: p1 at N=2 is a 1-1 tie (4 came first: wrong), at N=4 a 2-2 tie that 5 reached first (sample 2,
    # before 4's sample 3: right); p2 at N=4: 40 has two votes (wrong)
    assert acc["majority"] == [0.0, 0.0, 0.5]
    # the judge prefers the wrong answers: hacked at every N
    assert acc["reward_model"] == [0.0, 0.0, 0.0]
    # log-probability: p1 picks -0.1 (sample 0, wrong) always; p2 picks sample 1 at N=2 (wrong), sample 3 at N=4
    assert acc["logprob"] == [0.0, 0.0, 0.5]
    assert out["selectors"]["oracle"]["by_difficulty"] == {"1": [0.0, 1.0, 1.0], "2": [0.0, 0.0, 1.0]}
    no_rm = selection_curve(None, task, [p1, p2], (1,), max_new_tokens=8)
    assert set(no_rm["selectors"]) == {"majority", "oracle", "logprob"}
    with pytest.raises(ValueError, match="every N must be >= 1"):
        selection_curve(None, task, [p1], (0, 2), max_new_tokens=8)


def test_sample_many_groups_each_problems_samples_and_their_mean_logprob():
    torch.manual_seed(0)
    model = GPT(make_config("tiny", n_layer=1, dim=32, hidden_dim=64))
    task = make_task("arithmetic")
    problems = task.sample(3, "test", unique=True)
    texts, logps, lengths = sample_many(model, problems, 4, max_new_tokens=6, seed=1, batch_size=5)  # batches split groups
    assert [len(t) for t in texts] == [4, 4, 4] and [len(x) for x in logps] == [4, 4, 4]
    assert all(1 <= n <= 6 for ls in lengths for n in ls) and all(lp <= 0 for ls in logps for lp in ls)
    assert sample_many(model, problems, 4, max_new_tokens=6, seed=1, batch_size=5) == (texts, logps, lengths)  # seeded
