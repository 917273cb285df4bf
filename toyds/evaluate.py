"""Held-out evaluation: accuracy by difficulty, format, thinking, length, pass@k.

Every number toyds reports about a model comes from here, scored by the same
rule-based rewards that GRPO trains on (toyds/rewards.py): a completion is
correct only if it has exactly one well-formed answer block holding exactly the
right integer. Greedy decoding (temperature 0) gives one completion per problem;
sampling (temperature > 0, `samples` per problem) gives the mean accuracy over
samples, and pass@k: the share of problems with at least one correct answer among
k samples (Chen et al. 2021 estimate it from n >= k samples; toyds draws exactly k,
the plain definition).

The measures, per completion:
    accuracy      accuracy_reward(completion, truth)        (1 or 0)
    format        format_reward(completion)                 (1 or 0)
    thinks        the completion opens with <think>
    length        tokens generated, <eos> included
    think_length  characters inside <think>...</think> (0 if there is none)

Mistakes print the way a person reads them: `model says 47+38=75, truth 85`.
"""

from __future__ import annotations

import torch

from toyds.arithmetic import Problem, sample_problems, think_completion
from toyds.rewards import accuracy_reward, extract_answer, format_reward
from toyds.sampling import generate
from toyds.tokenizer import END_THINK, THINK, Tokenizer

def think_length(completion: str) -> int:
    start, end = completion.find(THINK), completion.find(END_THINK)
    return end - start - len(THINK) if 0 <= start < end else 0


def completion_cap(digits, ops, slack: int = 8) -> int:
    """A completion cap for GRPO and sampling: the longest worked trace (with its tags) of 3,000
    training problems of these digits and ops, plus `slack` tokens (49 for 1-3 digit sums).
    A right answer never needs more, and one rollout that rambles on holds up its whole batch."""
    tok = Tokenizer()
    return slack + max(len(tok.encode(think_completion(p))) for p in sample_problems(3000, digits=digits, ops=ops))


def complete(model, problems, temperature=0.0, samples=1, max_new_tokens=None, batch_size=256, seed=0,
             tokenizer=None, prefix: str = ""):
    """Completions (list of str) for each problem repeated `samples` times, in order.

    prefix is forced at the start of every completion (e.g. "<think>" makes a base
    model think) and is included in the returned text, so rewards score all of it.
    """
    tok = tokenizer or Tokenizer()
    prompts = [tok.encode(p.prompt() + prefix) for p in problems for _ in range(samples)]
    if max_new_tokens is None:
        max_new_tokens = model.cfg.block_size - max(len(p) for p in prompts)
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    texts = []
    for i in range(0, len(prompts), batch_size):
        g = generate(model, prompts[i : i + batch_size], max_new_tokens, temperature, tokenizer=tok, generator=gen)
        texts += [prefix + t for t in g.texts]
    return texts


def score(problems: list[Problem], texts: list[str], samples: int = 1) -> list[dict]:
    """One record per completion: the problem, the text and its measures."""
    tok = Tokenizer()
    records = []
    for j, text in enumerate(texts):
        p = problems[j // samples]
        records.append(
            {
                "problem": p,
                "completion": text,
                "accuracy": accuracy_reward(text, p.answer),
                "format": format_reward(text),
                "thinks": float(text.lstrip().startswith(THINK)),
                "length": len(tok.encode(text)),
                "think_length": think_length(text),
            }
        )
    return records


def summarise(records: list[dict]) -> dict:
    """Mean of each measure overall and by difficulty ('1', '2', ... as strings)."""

    def means(rs):
        n = max(len(rs), 1)
        return {
            "accuracy": sum(r["accuracy"] for r in rs) / n,
            "format_rate": sum(r["format"] for r in rs) / n,
            "think_rate": sum(r["thinks"] for r in rs) / n,
            "mean_length": sum(r["length"] for r in rs) / n,
            "mean_think_length": sum(r["think_length"] for r in rs) / n,
            "n": len(rs),
        }

    out = means(records)
    levels = sorted({r["problem"].digits for r in records})
    out["by_difficulty"] = {str(d): means([r for r in records if r["problem"].digits == d]) for d in levels}
    return out


def evaluate(model, problems, temperature=0.0, samples=1, seed=0, max_new_tokens=None, return_records=False,
             prefix: str = ""):
    """Accuracy, format rate, think rate and lengths on `problems`, overall and by difficulty."""
    texts = complete(model, problems, temperature, samples, max_new_tokens, seed=seed, prefix=prefix)
    records = score(problems, texts, samples)
    out = summarise(records)
    return (out, records) if return_records else out


def pass_at_k(model, problems, k: int, temperature: float = 1.0, seed: int = 0, max_new_tokens=None) -> float:
    """Share of problems solved by at least one of k sampled completions."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    records = score(problems, complete(model, problems, temperature, k, max_new_tokens, seed=seed), k)
    solved = [max(r["accuracy"] for r in records[i * k : (i + 1) * k]) for i in range(len(problems))]
    return sum(solved) / max(len(problems), 1)


def rollout_measures(problems: list[Problem], completions: list[str]) -> dict:
    """GRPO's measure_fn for arithmetic: the rule-based figures of a batch of rollouts, one problem per completion."""
    m = summarise(score(problems, completions))
    return {k: m[k] for k in ("accuracy", "format_rate", "think_rate")}


def describe_mistake(record: dict) -> str:
    """`model says 47+38=75, truth 85` (or what it said instead of an answer)."""
    p, text = record["problem"], record["completion"]
    said = extract_answer(text)
    shown = said if said is not None else f"no answer block in {text[:60]!r}"
    return f"model says {p.text}={shown}, truth {p.answer}"


def print_mistakes(records: list[dict], n: int = 5, file=None) -> None:
    wrong = [r for r in records if r["accuracy"] < 1]
    for r in wrong[:n]:
        print("  " + describe_mistake(r), file=file)
    if not wrong:
        print("  (no mistakes)", file=file)


def format_table(rows: dict[str, dict], levels: list[str], key: str = "accuracy") -> str:
    """A text table: one row per model name, one column per difficulty, then overall."""
    width = max(14, *(len(name) + 2 for name in rows))
    head = f"{'':<{width}}" + "".join(f"{d + ' digit':>10}" for d in levels) + f"{'all':>8}"
    lines = [head]
    for name, m in rows.items():
        cells = "".join(f"{m['by_difficulty'].get(d, {}).get(key, float('nan')):>10.3f}" for d in levels)
        lines.append(f"{name:<{width}}{cells}{m[key]:>8.3f}")
    return "\n".join(lines)
