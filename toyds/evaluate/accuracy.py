"""Held-out evaluation of any task: accuracy by difficulty, format, thinking, length, pass@k.

Every number toyds reports about a model comes from here, scored by the same
rule-based rules that GRPO trains on: the task's accuracy rule (tasks/base.py) and
R1's format rule (rl/rewards.py). Greedy decoding (temperature 0) gives one
completion per problem; sampling (temperature > 0, `samples` per problem) gives the
mean accuracy over samples, and pass@k: the share of problems with at least one
correct answer among k samples (Chen et al. 2021 estimate it from n >= k samples;
toyds draws exactly k, the plain definition).

The measures, per completion, averaged overall and per difficulty level of the task:
    accuracy      task.accuracy(completion, problem)        (1 or 0)
    format        format_reward(completion)                 (1 or 0)
    thinks        the completion opens with <think>
    length        tokens generated, <eos> included
    think_length  characters inside <think>...</think> (0 if there is none)

Mistakes print the way a person reads them: `model says 47+38=75, truth 85`.
"""

from __future__ import annotations

import torch

from toyds.core.sampling import generate
from toyds.core.tokenizer import END_THINK, THINK, Tokenizer
from toyds.rl.rewards import format_reward


def think_length(completion: str) -> int:
    start, end = completion.find(THINK), completion.find(END_THINK)
    return end - start - len(THINK) if 0 <= start < end else 0


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


def score(task, problems: list, texts: list[str], samples: int = 1) -> list[dict]:
    """One record per completion: the problem, its level, the text and its measures."""
    tok = Tokenizer()
    records = []
    for j, text in enumerate(texts):
        p = problems[j // samples]
        records.append(
            {
                "problem": p,
                "level": task.level(p),
                "completion": text,
                "accuracy": task.accuracy(text, p),
                "format": format_reward(text),
                "thinks": float(text.lstrip().startswith(THINK)),
                "length": len(tok.encode(text)),
                "think_length": think_length(text),
            }
        )
    return records


def summarise(records: list[dict], levels=None) -> dict:
    """Mean of each measure overall and by difficulty level (in `levels`' order, default sorted)."""

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
    present = {r["level"] for r in records}
    order = [lv for lv in levels if lv in present] if levels is not None else sorted(present)
    out["by_difficulty"] = {lv: means([r for r in records if r["level"] == lv]) for lv in order}
    return out


def evaluate(model, task, problems, temperature=0.0, samples=1, seed=0, max_new_tokens=None, return_records=False,
             prefix: str = ""):
    """Accuracy, format rate, think rate and lengths on `problems` of `task`, overall and by difficulty."""
    texts = complete(model, problems, temperature, samples, max_new_tokens, seed=seed, prefix=prefix)
    records = score(task, problems, texts, samples)
    out = summarise(records, task.levels)
    return (out, records) if return_records else out


def pass_at_k(model, task, problems, k: int, temperature: float = 1.0, seed: int = 0, max_new_tokens=None) -> float:
    """Share of problems solved by at least one of k sampled completions."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    records = score(task, problems, complete(model, problems, temperature, k, max_new_tokens, seed=seed), k)
    solved = [max(r["accuracy"] for r in records[i * k : (i + 1) * k]) for i in range(len(problems))]
    return sum(solved) / max(len(problems), 1)


def print_mistakes(task, records: list[dict], n: int = 5, file=None) -> None:
    """The first n wrong completions, as task.mistake reads them (`model says 47+38=75, truth 85`)."""
    wrong = [r for r in records if r["accuracy"] < 1]
    for r in wrong[:n]:
        print("  " + task.mistake(r["problem"], r["completion"]), file=file)
    if not wrong:
        print("  (no mistakes)", file=file)


def format_table(rows: dict[str, dict], levels: list[str], key: str = "accuracy", unit: str = " digit") -> str:
    """A text table: one row per model name, one column per difficulty level, then overall."""
    width = max(14, *(len(name) + 2 for name in rows))
    head = f"{'':<{width}}" + "".join(f"{d + unit:>10}" for d in levels) + f"{'all':>8}"
    lines = [head]
    for name, m in rows.items():
        cells = "".join(f"{m['by_difficulty'].get(d, {}).get(key, float('nan')):>10.3f}" for d in levels)
        lines.append(f"{name:<{width}}{cells}{m[key]:>8.3f}")
    return "\n".join(lines)
