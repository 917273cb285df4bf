"""Rejection sampling: a model writes, the rules keep what is right, and that becomes SFT data.

After R1's reinforcement learning converged, DeepSeek sampled its reasoning on many
prompts and kept only the completions a rule (or a judge) accepted: right answer,
readable, in format (R1 paper, section 2.3.3; 600k reasoning samples). Fine-tuning a
small model on that text is *sequence-level* (black-box) distillation, the way the
R1-Distill models were made (section 2.4): only text crosses from teacher to
student, so any model, of any vocabulary, can be the student.

    for each problem q: o_1..o_k ~ pi_teacher(. | q)
    keep (q, o_j) iff keep(o_j, q)        (default: accuracy = 1, format = 1, ends in <eos>)

How the toy differs: the filter is the task's accuracy rule and R1's format rule
(R1 also used a model judge and dropped mixed-language chains); k is 1-4 samples
per problem (the pipeline takes 4 and keeps one copy of each distinct right text,
as rejection-sampling fine-tuning does, Yuan et al. 2023), not many. White-box
distillation, which also matches the teacher's distributions, is distill/kd.py.
Shown in examples/04_distillation.py and the pipeline (pipeline/pipeline.py).
"""

from __future__ import annotations

from typing import Callable

from toyds.core.tokenizer import EOS
from toyds.evaluate.accuracy import complete
from toyds.rl.rewards import format_reward


def correct_and_formatted(task) -> Callable[[str, object], bool]:
    """The default filter for `task`: right answer, <think>...</think><answer>...</answer> format,
    and finished. "Finished" (ends in <eos>) is my addition: a student fine-tuned on text
    that never stops would learn to run on to the block limit."""

    def keep(completion: str, problem) -> bool:
        return (task.accuracy(completion, problem) == 1 and format_reward(completion) == 1
                and completion.rstrip().endswith(EOS))

    return keep


def rejection_sample(teacher, task, problems: list, k: int, temperature: float = 1.0,
                     max_new_tokens: int | None = None, seed: int = 0,
                     keep: Callable[[str, object], bool] | None = None, prefix: str = "",
                     dedupe: bool = False) -> tuple[list[tuple[str, str]], dict]:
    """The teacher writes k completions per problem; the ones `keep` accepts become SFT pairs.

    Returns (pairs, stats): pairs are (prompt, completion) strings for
    train/supervised.py's train_supervised, in problem order; stats = {"samples", "kept",
    "keep_rate", "problems", "problems_kept" (at least one kept), "coverage",
    "pairs" (returned, after any dedupe)}. keep(completion, problem) -> bool.
    Duplicates are kept by default, so a problem the teacher solves the same way k
    times weighs k times; dedupe=True keeps one copy of each (prompt, completion).
    prefix is forced at the start of every completion (e.g. "<think>") and is part
    of the pair, as evaluate/accuracy.py's complete returns it.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (samples per problem) must be an integer >= 1, got {k!r}")
    if not problems:
        raise ValueError("no problems given to rejection_sample")
    keep = keep or correct_and_formatted(task)
    # 1. the teacher samples k completions per problem (text is all we take from it)
    texts = complete(teacher, problems, temperature, k, max_new_tokens, seed=seed, prefix=prefix)
    # 2. the rule-based reward keeps the right, well-formed ones
    accepted = [bool(keep(t, problems[j // k])) for j, t in enumerate(texts)]
    pairs, seen, solved = [], set(), 0
    for i, p in enumerate(problems):
        kept_here = [(p.prompt(), texts[j]) for j in range(i * k, (i + 1) * k) if accepted[j]]
        solved += bool(kept_here)
        for pair in kept_here:
            if not (dedupe and pair in seen):
                seen.add(pair)
                pairs.append(pair)
    n, kept = len(texts), sum(accepted)
    stats = {"samples": n, "kept": kept, "keep_rate": kept / n, "problems": len(problems),
             "problems_kept": solved, "coverage": solved / len(problems), "pairs": len(pairs)}
    return pairs, stats
