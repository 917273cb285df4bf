"""toyds/tasks/: the Task seam, the registry, and a new task defined here that GRPO, evaluation,
rejection sampling and chapter 3's script run without a change to any other file."""

import argparse
import random
import zlib
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.distill.rejection import rejection_sample
from toyds.evaluate.accuracy import evaluate
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.rl.reward_registry import R1, resolve
from toyds.rl.rewards import accuracy_reward, accuracy_reward_batch
from toyds.tasks.addcheck import AdditionWithChecks
from toyds.tasks.arithmetic import Arithmetic, Problem, is_heldout
from toyds.tasks.base import Task, level_weights
from toyds.tasks.countdown import Countdown, CountdownLite
from toyds.tasks.registry import TASKS, add_task_args, make_task, register_task, task_from_args

# ---------------------------------------------------------- a task of one's own


@dataclass(frozen=True)
class Times:
    """a x b, a of 1-2 digits, b one digit: the problem of the new task."""

    a: int
    b: int

    @property
    def text(self) -> str:
        return f"{self.a}x{self.b}"

    def prompt(self) -> str:
        return f"<bos>{self.text}="

    def columns(self) -> dict:
        return {"answer": self.a * self.b}


@dataclass
class TimesTable(Task):
    """Multiplication by one digit, written in this test file only."""

    name: ClassVar[str] = "times"
    levels: ClassVar[tuple[str, ...]] = ("1", "2")

    def sample(self, n, split="train", seed=0, unique=False):
        self.check(split=split)
        rng, out = random.Random(f"{seed}-{split}"), []
        while len(out) < n:
            d = len(out) % 2 + 1
            p = Times(rng.randint(10 ** (d - 1), 10**d - 1), rng.randint(2, 9))
            if (zlib.crc32(p.text.encode()) % 5 == 0) == (split == "test") and not (unique and p in out):
                out.append(p)
        return out

    def corpus(self, problems, style="base", seed=0):
        self.check(style=style)
        rng = random.Random(seed)
        think = lambda p: f"<think>{p.text}={p.a * p.b}</think><answer>{p.a * p.b}</answer><eos>"
        direct = lambda p: f"<answer>{p.a * p.b}</answer><eos>"
        pick = {"think": lambda: think, "direct": lambda: direct, "base": lambda: rng.choice((think, direct))}[style]
        return [(p.prompt(), pick()(p)) for p in problems]

    def accuracy(self, completion, problem):
        return accuracy_reward(completion, problem.a * problem.b)

    def level(self, problem):
        return str(len(str(problem.a)))

    def rewards(self):
        return {"accuracy": accuracy_reward_batch}


@pytest.fixture
def times():
    register_task(TimesTable)
    yield TimesTable()
    TASKS.pop("times")


def test_a_new_task_runs_through_grpo_evaluation_and_rejection_sampling(times):
    torch.manual_seed(0)
    model = GPT(make_config("tiny", n_layer=1, dim=32, hidden_dim=64, block_size=48))
    train = times.sample(200, "train")
    from toyds.train.supervised import TrainConfig, train_supervised

    train_supervised(model, times.corpus(train, "think"), TrainConfig.recipe(30, 1e-2), progress=False)
    fns, weights = resolve(R1, times)  # "accuracy" is the task's own rule, "format" R1's
    hist = train_grpo(model, times.sample(50, "rl", seed=1), GRPOConfig(steps=2, prompts_per_step=4, group_size=4,
                      max_new_tokens=times.completion_cap()), reward_fns=fns, reward_weights=weights,
                      measure_fn=times.measure, progress=False)
    assert [h["step"] for h in hist] == [1, 2] and {"accuracy", "format_rate", "rewards/accuracy_reward_batch"} <= set(hist[0])
    test = times.sample(10, "test", unique=True)
    res = evaluate(model, times, test)
    assert set(res["by_difficulty"]) == {"1", "2"} and 0 <= res["accuracy"] <= 1
    pairs, stats = rejection_sample(model, times, test, k=2, max_new_tokens=16)
    assert stats["samples"] == 20 and all(times.accuracy(c, test[[q.prompt() for q in test].index(p)]) == 1
                                          for p, c in pairs)


@pytest.mark.slow
def test_a_new_task_runs_in_chapter_3s_script(times, tmp_path):
    from test_examples import metrics, run_script

    run_script("examples/03_r1_zero.py", ["--task", "times", "--preset", "tiny", "--pretrain-steps", "20",
                                          "--grpo-steps", "2", "--prompts", "2", "--group", "2", "--eval-per-level",
                                          "3", "--samples", "1", "--pass-k", "1", "--no-learned-rm", "--threads", "1",
                                          "--jobs", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert set(m["by_difficulty"]) == {"1", "2"} and len(m["history"]) == 2


# ------------------------------------------------------------- the registry


def test_the_registry_names_the_four_tasks_and_refuses_what_they_lack():
    assert set(TASKS) == {"arithmetic", "countdown", "countdown_easy", "addcheck"}
    assert make_task("arithmetic", digits=(1, 2)).levels == ("1", "2")
    with pytest.raises(ValueError, match="unknown task 'chess'; tasks are addcheck, arithmetic, countdown, countdown_easy"):
        make_task("chess")
    with pytest.raises(ValueError, match="task 'countdown' takes no option 'digits'"):
        make_task("countdown", digits=(1,))
    with pytest.raises(ValueError, match="'addcheck' is addition only"):
        make_task("addcheck", ops=("x",))
    with pytest.raises(ValueError, match="register_task takes a Task subclass with a name"):
        register_task(int)


def test_task_flags_apply_to_the_tasks_that_take_them():
    ap = argparse.ArgumentParser()
    add_task_args(ap, digits="1,2,3,4")
    assert task_from_args(ap.parse_args([])).digits == (1, 2, 3, 4)  # the script's default
    assert task_from_args(ap.parse_args(["--digits", "2", "--ops", "+,x"])).ops == ("+", "x")
    assert isinstance(task_from_args(ap.parse_args(["--task", "countdown"])), CountdownLite)
    with pytest.raises(ValueError, match="--ops is an option of the arithmetic tasks; task 'countdown' does not"):
        task_from_args(ap.parse_args(["--task", "countdown", "--ops", "x"]))
    with pytest.raises(SystemExit):
        task_from_args(ap.parse_args(["--task", "countdown", "--digits", "1"]), ap)


def test_bad_splits_and_styles_are_named():
    with pytest.raises(ValueError, match="split must be one of \\('train', 'rl', 'test'\\), got 'dev'"):
        Arithmetic().sample(3, "dev")
    with pytest.raises(ValueError, match="style must be one of \\('base', 'think', 'direct'\\), got 'chatty'"):
        CountdownLite().corpus([], "chatty")
    with pytest.raises(ValueError, match="'addcheck' thinks in every style"):
        AdditionWithChecks().corpus([], "direct")


# ------------------------------------------- the built-in tasks, against the modules they wrap


def test_arithmetic_task_draws_what_its_module_draws():
    from toyds.tasks.arithmetic import sample_problems
    from toyds.tasks.arithmetic_traces import build_corpus

    task = Arithmetic(digits=(1, 2, 3))
    assert task.sample(50, "train", seed=3) == sample_problems(50, (1, 2, 3), ("+",), "train", 3)
    assert task.sample(50, "rl", seed=4) == sample_problems(50, (1, 2, 3), ("+",), "train", 4)  # RL prompts: train
    assert task.sample(300, "test", unique=True) == sample_problems(300, (1, 2, 3), ("+",), "test", 0, unique=True,
                                                                     allow_fewer=True)
    probs = task.sample(20)
    assert task.corpus(probs, "base", seed=1) == build_corpus(probs, "base", seed=1)
    assert task.completion_cap() == 49  # 999+999's trace (41 tokens) + 8
    assert task.level(Problem(47, "+", 38, 2)) == "2" and task.truth(Problem(47, "+", 38, 2)) == "85"


def test_problems_read_from_text():
    assert Arithmetic().parse("347+589") == Problem(347, "+", 589, 3)
    assert Arithmetic().parse(" 902 - 45 =") == Problem(902, "-", 45, 3)
    assert CountdownLite().parse("8,3,1 to 6") == Countdown((8, 3, 1), 6)
    for bad in ("8,3 to 6", "8,3,12 to 6", "8,3,1 to 16", "8,3,1 6"):
        with pytest.raises(ValueError, match="cannot read .* as a Countdown-lite problem"):
            CountdownLite().parse(bad)
    with pytest.raises(ValueError, match="task 'times' cannot read a problem from text"):
        TimesTable().parse("7x8")


def test_countdown_task_draws_what_its_module_draws():
    from toyds.tasks.countdown import build_corpus, sample_problems

    task = CountdownLite()
    assert task.sample(30, "train", seed=2) == sample_problems(30, "pretrain", 2)
    assert task.sample(30, "rl", seed=2) == sample_problems(30, "rl", 2)
    probs = task.sample(40)
    assert task.search_corpus(probs, 0.9, seed=1) == build_corpus(probs, 0.9, 0.0, 1, fixed_heads=True)
    assert task.corpus(probs, "base", seed=1) == build_corpus(probs, 0.35, 0.0, 1, fixed_heads=True)
    assert all(task.accuracy(c, p) == 1 for p, (_, c) in zip(probs, task.corpus(probs, "think")))
    assert task.level(Countdown((8, 3, 1), 6)) == "1"


# ------------------------------------------------------- weighted sampling


def test_sample_weighted_visits_the_levels_in_proportion(times):
    task = make_task("arithmetic")
    # weights (1, 2, 3): the cycle is 1, 2, 2, 3, 3, 3, worked by hand for two cycles
    assert [p.digits for p in task.sample_weighted(12, "train", 0, (1, 2, 3))] == [1, 2, 2, 3, 3, 3] * 2
    many = task.sample_weighted(601, "train", 0, (1, 2, 3))  # 100 cycles and one more problem
    assert [sum(p.digits == d for p in many) for d in (1, 2, 3)] == [101, 200, 300]
    assert all(not is_heldout(p) for p in many)  # from the split asked for
    assert task.sample_weighted(30, "train", 4) == task.sample(30, "train", 4)  # None: exactly `sample`
    # a task written elsewhere gets it too, from its own `sample`
    mixed = times.sample_weighted(40, "train", 0, (1, 3))
    assert [times.level(p) for p in mixed[:8]] == ["1", "2", "2", "2"] * 2 and len(mixed) == 40


def test_bad_level_weights_are_named():
    task = make_task("arithmetic")
    for bad in ((1, 2), (1, 0, 3), (1, 2.5, 3), (True, 1, 1)):
        with pytest.raises(ValueError, match=r"weights must be 3 whole numbers >= 1, one per level"):
            task.sample_weighted(10, "train", 0, bad)
    assert level_weights("harder", task) == (1, 2, 3) and level_weights("even", task) is None
    with pytest.raises(ValueError, match=r"weighting must be one of \('harder', 'even'\), got 'heavy'"):
        level_weights("heavy", task)


def test_a_mixed_task_hands_each_problem_to_its_own_part():
    from toyds.rl.grpo import weighted_rewards
    from toyds.rl.reward_registry import resolve
    from toyds.tasks.mixed import Mixed, Part

    task = Mixed()
    problems = task.sample(6, "rl")
    assert [p.name for p in problems] == ["countdown", "addcheck"] * 3
    cd, add = problems[0], problems[1]
    assert cd.prompt().endswith(" to " + str(cd.problem.target) + ":") and add.prompt().endswith("=")
    right_cd = f"<think>x</think><answer>{cd.problem.solutions()[0].expression()}</answer><eos>"
    right_add = f"<think>x</think><answer>{add.problem.answer}</answer><eos>"
    # each row is scored by its own task's rule: a Countdown answer on an addition prompt is wrong
    total, per_fn = weighted_rewards(*resolve("accuracy:1", task), [right_cd, right_add, right_add, right_cd],
                                     [cd, add, cd, add])
    assert total.tolist() == [1.0, 1.0, 0.0, 0.0]
    m = task.measure([cd, add], [right_cd, right_add])
    assert m["accuracy"] == 1.0 and m["countdown"]["verify_rate"] == 0.0 and m["addcheck"]["check_rate"] == 0.0
    # the base corpus is each part's own: Countdown-lite's search share, addition's base mix
    corpus = task.search_corpus(task.sample(400, "train"), search_share=1.0, seed=0)
    cd_rows = [c for p, c in corpus if " to " in p]
    assert len(cd_rows) == 200 and all(" ok" in c for c in cd_rows)
    assert any("check " in c for p, c in corpus if p.endswith("="))
    assert Part("countdown", cd.problem) == cd and task.level(add) == "addcheck"
