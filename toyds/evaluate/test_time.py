"""Test-time compute: sample N completions and choose one, by vote or by a scorer.

RL buys accuracy at training time. The other way to buy it is at test time: sample
N completions of the same prompt and pick one. The R1 paper reports both pass@1 and
"cons@64", a majority vote over 64 samples (section 2.2.4); self-consistency (Wang et
al. 2023) is the same vote; best-of-N keeps the completion a scorer likes most:

    majority vote   a* = argmax_a #{i <= N : answer(c_i) = a}     (completions with no answer abstain)
    best-of-N       c* = argmax_{i <= N} s(c_i)                    (ties: the earliest sample)

The scorers s here: the task's own rule (an oracle: best-of-N by the rule is pass@N,
the ceiling of any selector), a learned reward model (rl/reward_model.py: what a
system without a checker has, and what RL against it hacked in chapter 3), and the
model's own mean token log-probability (no second model at all).

`selection_curve` draws max(N) samples per problem once and scores every N on the
first N of them, so the points of one curve share their samples, as cons@64 and
cons@16 do when read off one run. The compute of a point is the tokens generated:
N samples cost N times the mean completion length.

How the toy differs: answers are compared as strings (`347+589` answers are
integers, so that is exact; two right Countdown expressions that differ as text
split their votes); N is at most a few dozen, not 64 per prompt over AIME.
Shown in examples/11_test_time.py; `toyds solve --samples N --vote` prints one vote.

Shapes: P problems, N samples per problem.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import torch

from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.rl.rewards import extract_answer

SELECTORS = ("majority", "oracle", "reward_model", "logprob")


def majority_vote(answers: list[str | None]) -> int:
    """The index of the completion whose answer most completions share (None answers abstain).

    majority_vote(["7", None, "8", "8"]) -> 2: "8" has two votes, and its first holder is
    sample 2. A tie goes to the answer that reached the top count first in sample order;
    if nobody answered, sample 0 is kept (it is as good as any)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0
    top = max(counts.values())
    seen: Counter = Counter()
    for i, a in enumerate(answers):  # the first answer to reach the top count wins a tie
        if a is not None:
            seen[a] += 1
            if seen[a] == top:
                return answers.index(a)
    raise AssertionError("unreachable: some answer has the top count")


def best_of(scores: list[float]) -> int:
    """The index of the highest score; the earliest wins a tie. best_of([0.2, 0.9, 0.9]) -> 1."""
    if not scores:
        raise ValueError("best_of needs at least one score")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def sample_many(model, problems: list, n: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
                batch_size: int = 256) -> tuple[list[list[str]], list[list[float]], list[list[int]]]:
    """n sampled completions per problem: their texts, mean token log-probabilities and lengths,
    each a list (problem) of lists (sample), in sampling order."""
    tok = Tokenizer()
    prompts = [tok.encode(p.prompt()) for p in problems for _ in range(n)]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    texts, mean_logp, lengths = [], [], []
    for i in range(0, len(prompts), batch_size):
        g = generate(model, prompts[i : i + batch_size], max_new_tokens, temperature, tokenizer=tok, generator=gen)
        lens = g.lengths.clamp(min=1)
        # the model's own confidence: mean over the completion's tokens of log pi(token)
        texts += g.texts
        mean_logp += (g.logprobs.sum(1) / lens).tolist()
        lengths += g.lengths.tolist()
    split = lambda xs: [xs[j * n : (j + 1) * n] for j in range(len(problems))]
    return split(texts), split(mean_logp), split(lengths)


def selection_curve(model, task, problems: list, ns=(1, 2, 4, 8, 16, 32), *, max_new_tokens: int,
                    reward_model=None, seed: int = 0, answer: Callable[[str], str | None] = extract_answer) -> dict:
    """Accuracy of each selector at each N, overall and by level, with the tokens each N costs.

    Returns {"n": [...], "tokens": [mean tokens generated per problem at each N],
    "selectors": {name: {"accuracy": [...], "by_difficulty": {level: [...]}}}}. The
    selectors are SELECTORS ("reward_model" only when a reward model is given).
    """
    ns = sorted(set(int(n) for n in ns))
    if not ns or ns[0] < 1:
        raise ValueError(f"every N must be >= 1, got {ns}")
    texts, logps, lengths = sample_many(model, problems, ns[-1], max_new_tokens, seed=seed)
    right = [[task.accuracy(t, p) for t in ts] for ts, p in zip(texts, problems)]  # (P, N) the rule, 1 or 0
    rm = None
    if reward_model is not None:
        flat = reward_model.score([p.prompt() + t for ts, p in zip(texts, problems) for t in ts])
        rm = [flat[j * ns[-1] : (j + 1) * ns[-1]] for j in range(len(problems))]
    choose = {
        "majority": lambda j, n: majority_vote([answer(t) for t in texts[j][:n]]),
        "oracle": lambda j, n: best_of(right[j][:n]),
        "logprob": lambda j, n: best_of(logps[j][:n]),
    }
    if rm is not None:
        choose["reward_model"] = lambda j, n: best_of(rm[j][:n])
    levels = [task.level(p) for p in problems]
    order = [lv for lv in task.levels if lv in set(levels)]
    out = {"n": ns, "tokens": [sum(sum(ls[:n]) for ls in lengths) / len(problems) for n in ns], "selectors": {}}
    for name in (s for s in SELECTORS if s in choose):
        per_n = [[right[j][choose[name](j, n)] for j in range(len(problems))] for n in ns]  # (len(ns), P)
        out["selectors"][name] = {
            "accuracy": [sum(c) / len(c) for c in per_n],
            "by_difficulty": {lv: [sum(c[j] for j in range(len(c)) if levels[j] == lv) / levels.count(lv)
                                   for c in per_n] for lv in order},
        }
    return out
