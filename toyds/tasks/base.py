"""What a task is: problems with checkable answers, worked traces, rule-based rewards, measures.

R1-Zero needs problems whose answers a rule can check (R1 paper, section 2.2.2);
everything else in toyds is generic over them. A task is a class with:

    name                                 how --task and tasks/registry.py's TASKS call it
    levels                               its difficulty levels in order, as strings ("1", "2", "3")
    sample(n, split, seed, unique)       problems of a split: "train" (pretraining), "rl" (RL prompts),
                                         "test" (held out, never trained on); levels visited in turn
                                         (sample_weighted, given, visits them in other proportions)
    corpus(problems, style, seed)        (prompt, completion) pairs: "think" (worked traces), "direct"
                                         (answers only), "base" (a mix: R1-Zero's starting point)
    accuracy(completion, problem)        the accuracy rule, str -> float (1.0 right, 0.0 not)
    rewards()                            {name: TRL-style batched reward}, "accuracy" at least;
                                         --reward accuracy:1,format:0.5 resolves names here first
    level(problem), measure(problems, completions), mistake(problem, completion), completion_cap(),
    parse(text) (a problem from what a person types: `toyds solve "347+589"`)

A problem is any object with `prompt()` (the text the model continues), `columns()`
(what TRL-style reward functions receive, e.g. {"answer": 936}) and `text`.
Evaluation (toyds/evaluate/accuracy.py), GRPO, rejection sampling and the pipeline
read only this interface, so a new task is one file: subclass Task, fill these in,
and `register_task` it (tests/test_tasks.py defines one inside the test). Its
characters must be in the tokenizer's vocabulary (core/tokenizer.py).

How this differs from nanochat's tasks: one split per purpose instead of a dataset
download, and the worked trace belongs to the task, since the toy's base models are
pretrained on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from toyds.core.tokenizer import Tokenizer
from toyds.evaluate.accuracy import score, summarise
from toyds.rl.rewards import extract_answer

SPLITS = ("train", "rl", "test")
STYLES = ("base", "think", "direct")
WEIGHTINGS = ("harder", "even")  # how a pretraining corpus visits the levels (level_weights)


def level_weights(weighting: str, task) -> tuple[int, ...] | None:
    """Task.sample_weighted's weights for a named weighting: "harder" visits level i (from 1) i times
    per cycle, (1, 2, 3) for three levels; "even" (None) visits them in turn. Why "harder": the hardest
    level's traces are what a base learns last, and the easiest level has few distinct problems
    (80 one-digit sums in the training split) to begin with."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return tuple(range(1, len(task.levels) + 1)) if weighting == "harder" else None


@dataclass
class Task:
    """The base class: fill in the methods that raise, keep or override the rest."""

    name: ClassVar[str] = ""
    levels: ClassVar[tuple[str, ...]] = ()
    level_unit: ClassVar[str] = ""  # how a table heads a level's column: "3" + " digit"

    # ------------------------------------------------------------ to fill in
    def sample(self, n: int, split: str = "train", seed: int = 0, unique: bool = False) -> list:
        """n problems of `split`, the levels visited in turn; unique=True: distinct ones."""
        raise NotImplementedError

    def corpus(self, problems: list, style: str = "base", seed: int = 0) -> list[tuple[str, str]]:
        """One (prompt, completion) pair per problem in `style` (one of STYLES)."""
        raise NotImplementedError

    def accuracy(self, completion: str, problem) -> float:
        """1.0 iff the completion's one answer solves the problem, else 0.0 (never raises for model text)."""
        raise NotImplementedError

    def level(self, problem) -> str:
        """The problem's difficulty level, one of self.levels."""
        raise NotImplementedError

    def rewards(self) -> dict:
        """{name: fn(completions, **columns) -> [float]}: the task's own rule-based rewards, TRL-style,
        "accuracy" at least (R1's "format" and the generic ones are rl/reward_registry.py's)."""
        raise NotImplementedError

    # ------------------------------------------------------------ defaults
    def sample_weighted(self, n: int, split: str = "train", seed: int = 0, weights=None) -> list:
        """n problems of `split`, level i visited weights[i] times per cycle (whole numbers, one per
        level; None: in turn, as `sample`). weights=(1, 2, 3) over three levels cycles 1, 2, 2, 3, 3, 3:
        half the problems come from the hardest level. Built from `sample`, so every task has it."""
        if weights is None:
            return self.sample(n, split, seed)
        weights = tuple(weights)
        if len(weights) != len(self.levels) or not all(type(w) is int and w >= 1 for w in weights):
            raise ValueError(f"task {self.name!r}: weights must be {len(self.levels)} whole numbers >= 1, one per "
                             f"level {self.levels}, got {weights!r}")
        cycle = [lv for lv, w in zip(self.levels, weights) for _ in range(w)]
        order = [cycle[i % len(cycle)] for i in range(n)]
        # `sample` visits the levels in turn, so this pool holds enough of every level
        pool = self.sample(len(self.levels) * max(order.count(lv) for lv in self.levels), split, seed)
        by_level = {lv: iter([p for p in pool if self.level(p) == lv]) for lv in self.levels}
        try:
            return [next(by_level[lv]) for lv in order]
        except StopIteration:
            raise ValueError(f"task {self.name!r}: sample() did not visit its levels in turn") from None

    def worked(self, problem) -> str:
        """The worked trace of one problem, in R1's format (the "think" style)."""
        return self.corpus([problem], "think")[0][1]

    def completion_cap(self, slack: int = 8) -> int:
        """Tokens a right completion never needs more than: the longest worked trace of 3,000 training
        problems, plus `slack`. GRPO and sampling stop there (a rambling rollout holds up its batch)."""
        tok = Tokenizer()
        return slack + max(len(tok.encode(self.worked(p))) for p in self.sample(3000, "train"))

    def measure(self, problems: list, completions: list[str]) -> dict:
        """The figures GRPO logs for a batch of rollouts: accuracy, format rate, think rate."""
        m = summarise(score(self, problems, completions))
        return {k: m[k] for k in ("accuracy", "format_rate", "think_rate")}

    def parse(self, text: str):
        """The problem a person typed (`toyds solve "347+589"`), or a ValueError saying how to write one."""
        raise ValueError(f"task {self.name!r} cannot read a problem from text")

    def truth(self, problem) -> str:
        """What the right answer is, in words (printed beside the model's)."""
        return ", ".join(f"{k} {v}" for k, v in problem.columns().items())

    def mistake(self, problem, completion: str) -> str:
        """A wrong completion, the way a person reads it."""
        said = extract_answer(completion)
        return f"model says {problem.text}: {said if said is not None else f'no answer block in {completion[:60]!r}'}"

    def check(self, split: str | None = None, style: str | None = None) -> None:
        """Raise a ValueError naming a split or style this task does not have."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"task {self.name!r}: split must be one of {SPLITS}, got {split!r}")
        if style is not None and style not in STYLES:
            raise ValueError(f"task {self.name!r}: style must be one of {STYLES}, got {style!r}")
