"""Two tasks in one policy: does RL keep the thinking where it pays *inside one model*?

Chapter 7 shows RL keeping the checks on Countdown-lite (a guess is unreliable, a
check is cheap) and trimming them on addition (the worked sum is already right) in
two runs from two bases. `Mixed` puts both tasks in one base and one RL run: half the
prompts are one task, half the other, each scored by its own accuracy rule, so the
only thing telling the policy which habit pays is the prompt it reads.

    prompts     8,3,1 to 6:      (Countdown-lite)        347+589=      (addition with checks)
    a problem   Part("countdown", <the Countdown problem>): the part's name and its own problem

The base corpus is each part's own: Countdown-lite's search traces and guesses in the
share its curriculum asks for (`search_corpus`), addition's base mix (some checks).
`measure` reports each part's own measures under its name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from toyds.tasks.addcheck import AdditionWithChecks
from toyds.tasks.base import Task
from toyds.tasks.countdown import CountdownLite


@dataclass(frozen=True)
class Part:
    """One problem of a mixed task: the name of the part it comes from, and the problem itself."""

    name: str
    problem: object

    @property
    def text(self) -> str:
        return self.problem.text

    def prompt(self) -> str:
        return self.problem.prompt()

    def columns(self) -> dict:
        return {"part": self}  # the mixed accuracy rule hands each row to its own task


def _shuffled(pairs: list, seed: int) -> list:
    """The parts' corpora in one order, so a batch draws from both."""
    random.Random(seed).shuffle(pairs)
    return pairs


def _search_tasks() -> dict:
    return {"countdown": CountdownLite(), "addcheck": AdditionWithChecks(digits=(1, 2, 3))}


@dataclass
class Mixed(Task):
    """Countdown-lite and addition with checks, half the problems each ("mixed")."""

    name: ClassVar[str] = "mixed"
    levels: ClassVar[tuple[str, ...]] = ("countdown", "addcheck")  # a problem's level is its part
    level_unit: ClassVar[str] = ""
    parts: dict = field(default_factory=_search_tasks)  # {name: task}

    def sample(self, n, split="train", seed=0, unique=False):
        """n problems, the parts in turn (each part's own levels in turn within it)."""
        self.check(split=split)
        k = len(self.parts)
        drawn = {name: iter(t.sample((n + k - 1) // k, split, seed, unique=unique)) for name, t in self.parts.items()}
        names = list(self.parts)
        return [Part(names[i % k], next(drawn[names[i % k]])) for i in range(n)]

    def _split(self, problems) -> dict[str, list]:
        by = {name: [] for name in self.parts}
        for p in problems:
            by[p.name].append(p.problem)
        return by

    def search_corpus(self, problems, search_share: float, seed: int = 0) -> list[tuple[str, str]]:
        """Countdown-lite's curriculum share of search traces; addition's base mix; shuffled together."""
        pairs = []
        for name, probs in self._split(problems).items():
            task = self.parts[name]
            if hasattr(task, "search_corpus"):
                pairs += task.search_corpus(probs, search_share, seed)
            else:
                pairs += task.corpus(probs, "base", seed)
        return _shuffled(pairs, seed)

    def corpus(self, problems, style="base", seed=0):
        self.check(style=style)
        pairs = [pair for name, probs in self._split(problems).items()
                 for pair in self.parts[name].corpus(probs, style, seed)]
        return _shuffled(pairs, seed)

    def accuracy(self, completion, problem) -> float:
        return self.parts[problem.name].accuracy(completion, problem.problem)

    def level(self, problem) -> str:
        return problem.name

    def rewards(self) -> dict:
        def accuracy(completions, part, **kwargs) -> list[float]:
            return [self.accuracy(c, p) for c, p in zip(completions, part)]

        return {"accuracy": accuracy}

    def measure(self, problems, completions) -> dict:
        """Each part's own measures under its name, and the accuracy over all."""
        rows: dict[str, tuple[list, list]] = {name: ([], []) for name in self.parts}
        for p, c in zip(problems, completions):
            rows[p.name][0].append(p.problem)
            rows[p.name][1].append(c)
        n = max(len(completions), 1)
        return {"accuracy": sum(self.accuracy(c, p) for p, c in zip(problems, completions)) / n,
                **{name: self.parts[name].measure(*rows[name]) for name in self.parts if rows[name][0]}}
