"""The workshop's checker (toyds/workshop/checker.py, toyds/workshop/exercises.py): every solution passes, every
untouched stub fails with a readable message, a participant's mistakes are explained, and the
R1-Zero example runs with a participant's advantages."""

import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toyds.cli.main import main
from toyds.workshop.checker import run_check
from toyds.workshop.compare import show
from toyds.workshop.exercises import EXERCISES
from toyds.workshop.participant import function_arg, load_function, solution_path, stub_path

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(EXERCISES)


def quiet(*args):
    pass


def test_the_issue_names_every_exercise():
    assert set(NAMES) >= {"advantages", "grpo_loss", "gate", "bias_update", "accuracy_reward", "kd_loss",
                          "all_to_all_counts", "mla_absorb"}


@pytest.mark.parametrize("name", NAMES)
def test_every_solution_passes_its_checker(name):
    report = run_check(name, solution_path(name), say=quiet)
    assert report.passed, "\n".join(report.lines)
    assert len(report.results) >= 5  # each exercise teaches with several cases


@pytest.mark.parametrize("name", NAMES)
def test_every_untouched_stub_fails_with_a_readable_message(name):
    report = run_check(name, say=quiet)  # the default file is the stub
    assert not report.passed
    assert "is not written yet" in report.problem and "NotImplementedError" in report.problem
    assert f"workshop/exercises/{name}.py" in report.problem and f"toyds check {name}" in report.problem


@pytest.mark.parametrize("name", NAMES)
def test_stub_and_solution_keep_toyds_names_and_signatures(name):
    ex = EXERCISES[name]
    for path in (stub_path(name), solution_path(name)):
        module = load_function(path, ex.functions[0]).__globals__
        for fn_name, ref in zip(ex.functions, ex.references()):
            mine = module[fn_name]
            assert [(p.name, p.default) for p in inspect.signature(mine).parameters.values()] == \
                   [(p.name, p.default) for p in inspect.signature(ref).parameters.values()]
    stub = stub_path(name).read_text()
    assert "raise NotImplementedError" in stub and "toyds check" in stub


def test_solutions_are_the_library_code():
    """A solution is toyds's own function, so it drops into the library unchanged."""
    for name, ex in EXERCISES.items():
        text = solution_path(name).read_text()
        for ref in ex.references():
            assert inspect.getsource(ref) in text, f"{name}: {ref.__name__} differs from toyds's"


def test_list_names_every_exercise_and_the_function_it_mirrors(capsys):
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for name, ex in EXERCISES.items():
        assert name in out and ex.mirrors[0] in out


def test_cli_exit_codes(capsys):
    assert main(["check", "bias_update", "--file", str(solution_path("bias_update"))]) == 0
    assert "All 6 cases pass" in capsys.readouterr().out
    assert main(["check", "bias_update"]) == 1
    assert main(["check", "no_such_exercise"]) == 2
    assert "unknown exercise 'no_such_exercise'" in capsys.readouterr().err


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(text)
    return path


def test_a_wrong_answer_gets_case_input_expected_received_and_hint(tmp_path):
    # population std instead of the sample std, and no NaN handling
    path = write(tmp_path, "def group_advantages(rewards, group_size, scale='group', eps=1e-4):\n"
                           "    r = rewards.float().view(-1, group_size)\n"
                           "    return ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + eps)"
                           ").flatten()\n")
    report = run_check("advantages", path, say=quiet)
    text = "\n".join(report.lines)
    assert not report.passed
    assert "Case 1, 'one group of four', is the first to fail" in text
    assert "input:     group_advantages(tensor([1.0, 0.0, 1.0, 0.0]), group_size=4)" in text
    assert "expected:  tensor([0.8659, -0.8659, 0.8659, -0.8659])" in text  # 0.5 / (0.57735 + 1e-4)
    assert "received:  tensor([0.9998, -0.9998, 0.9998, -0.9998])" in text  # 0.5 / (0.5 + 1e-4)
    assert "hint: " in text and "Bessel" in text
    assert "nanmean" not in text.split("hint:")[0]  # the report shows values, never the solution's code
    assert f"of {len(report.results)} cases pass" in text


def test_a_participant_file_that_raises_or_does_not_parse(tmp_path):
    report = run_check("bias_update", write(tmp_path, "def bias_update(bias, load, gamma):\n    return bias + undefined\n"),
                       say=quiet)
    assert "your function raised NameError: name 'undefined' is not defined (line 2 of" in report.results[0].detail
    report = run_check("bias_update", write(tmp_path, "def bias_update(bias, load, gamma):\n    return (bias\n"),
                       say=quiet)
    assert report.problem.startswith("Python cannot read") and "line 2" in report.problem
    report = run_check("bias_update", write(tmp_path, "import nonexistent_module\n"), say=quiet)
    assert "importing" in report.problem and "ModuleNotFoundError" in report.problem
    report = run_check("bias_update", write(tmp_path, "def other():\n    pass\n"), say=quiet)
    assert "defines no function named bias_update" in report.problem
    report = run_check("bias_update", write(tmp_path, "def bias_update(b, load, gamma=0.1):\n    return b\n"), say=quiet)
    assert "must keep the signature it has in toyds" in report.problem
    report = run_check("bias_update", write(tmp_path, "def bias_update(bias, load, gamma):\n    bias += 1\n"), say=quiet)
    assert "received None at 'new bias': is a `return` missing?" in report.results[0].detail
    assert "there is no file at" in run_check("gate", tmp_path / "none.py", say=quiet).problem


@pytest.mark.parametrize("loop", ["while True:\n        pass", "sum(itertools.count())"], ids=["python", "in C"])
def test_a_hang_is_stopped_and_explained(tmp_path, loop):
    """An endless loop, in Python or inside C code (which never gives a thread the interpreter back):
    the case is stopped at --timeout with the same sentence, and the command exits."""
    path = write(tmp_path, f"import itertools\n\n\ndef bias_update(bias, load, gamma):\n    {loop}\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toyds.cli", "check", "bias_update", "--file", str(path),
                        "--timeout", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and time.perf_counter() - t0 < 60
    assert "case 1, 'by hand: busy down, quiet up, average stays', did not finish in 1 s: is there an endless loop" \
        in r.stdout and "input: bias_update(" in r.stdout


def test_a_hang_at_import_and_a_crash_are_explained(tmp_path):
    report = run_check("bias_update", write(tmp_path, "import itertools\nsum(itertools.count())\n"), timeout=1,
                       say=quiet)
    assert report.timed_out and "importing" in report.problem and "did not finish in 1 s" in report.problem
    report = run_check("bias_update", write(tmp_path, "import os\n\n\ndef bias_update(bias, load, gamma):\n"
                                                      "    os._exit(3)\n"), say=quiet)
    assert "ended the checker's process (exit code 3)" in report.problem


def test_show_reads_like_a_person_writes():
    assert show(torch.tensor([1.0, 0.5])) == "tensor([1.0, 0.5])"
    assert show(torch.zeros(2, 2)) == "tensor([0.0, 0.0, 0.0, 0.0], shape (2, 2))"
    assert show(list(range(20))).endswith("11, ...]")


def test_load_function_and_the_argparse_hook(tmp_path):
    fn = load_function(solution_path("advantages"), "group_advantages")
    assert torch.allclose(fn(torch.tensor([1.0, 0.0]), 2), torch.tensor([0.7070, -0.7070]), atol=1e-3)
    with pytest.raises(ValueError, match="defines no function named 'nope'"):
        load_function(solution_path("advantages"), "nope")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="not written yet"):
        function_arg("group_advantages", (torch.tensor([1.0, 0.0]), 2))(str(stub_path("advantages")))


def test_train_grpo_uses_the_given_advantage_fn():
    from toyds.core.model import GPT, make_config
    from toyds.rl.grpo import GRPOConfig, train_grpo
    from toyds.rl.grpo_loss import group_advantages
    from toyds.rl.reward_registry import R1, resolve
    from toyds.tasks.arithmetic import Arithmetic, sample_problems

    calls = []

    def mine(rewards, group_size, scale="group", eps=1e-4):
        calls.append((tuple(rewards.shape), group_size, scale))
        return group_advantages(rewards, group_size, scale, eps)

    torch.manual_seed(0)
    model = GPT(make_config("tiny"))
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=3, max_new_tokens=8)
    fns, weights = resolve(R1, Arithmetic())
    train_grpo(model, sample_problems(10, digits=(1,)), cfg, reward_fns=fns, reward_weights=weights,
               advantage_fn=mine, progress=False)
    assert calls == [((6,), 3, "group")] * 2


@pytest.mark.slow
def test_r1_zero_runs_with_a_participants_advantages(tmp_path):
    from test_examples import metrics, run_script

    run_script("examples/03_r1_zero.py", ["--advantages", str(solution_path("advantages")), "--preset", "tiny",
                                          "--pretrain-steps", "20", "--grpo-steps", "2", "--prompts", "2",
                                          "--group", "4", "--eval-per-level", "3", "--samples", "1", "--pass-k", "1",
                                          "--digits", "1,2", "--max-new-tokens", "24", "--no-learned-rm",
                                          "--threads", "1", "--out", str(tmp_path)])
    assert [r["step"] for r in metrics(tmp_path)["history"]] == [1, 2]
