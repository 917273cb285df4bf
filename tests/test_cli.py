import pytest
import torch

from toyds.cli.main import build_parser, main
from toyds.tasks.arithmetic import Arithmetic

parse_problem = Arithmetic().parse
from toyds.core.model import GPT, make_config
from toyds.tasks.arithmetic import Problem
from toyds.train.checkpoint import save_checkpoint


def test_parse_problem():
    assert parse_problem("347+589") == Problem(347, "+", 589, 3)
    assert parse_problem(" 902 - 45 =") == Problem(902, "-", 45, 3)
    assert parse_problem("347*8") == Problem(347, "x", 8, 3)
    for bad in ["347/8", "3a+1", "+5", "١٢+3"]:
        with pytest.raises(ValueError, match="cannot read"):
            parse_problem(bad)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for cmd in ("train", "solve", "experts", "pipeline", "quantize"):
        assert cmd in out


def test_solve_prints_thinking_answer_and_rewards(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny")))
    assert main(["solve", "12+9", "--model", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "<bos>12+9=" in out and "truth 21" in out and "rewards: accuracy" in out


def test_solve_vote_tallies_the_printed_answers_and_keeps_the_majority(tmp_path, capsys):
    from toyds.train.supervised import TrainConfig, train_supervised

    torch.manual_seed(0)
    model = GPT(make_config("tiny"))  # briefly trained, so its sampled answers differ and mostly parse
    task = Arithmetic(digits=(1, 2))
    train_supervised(model, task.corpus(task.sample(2000, "train"), "think"), TrainConfig.recipe(150, 1e-2),
                     progress=False)
    path = save_checkpoint(tmp_path / "m.pt", model)
    assert main(["solve", "47+38", "--model", str(path), "--samples", "12", "--vote", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    said = [line.split("answer: ")[1].split("  (truth")[0] for line in out.splitlines() if line.startswith("  answer: ")]
    assert len(said) == 12 and len(set(said)) > 1  # --samples 12 at the default temperature 1 for several samples
    counts = {a: said.count(a) for a in said}
    tally = out.split("vote over 12 samples: ")[1].splitlines()[0]
    assert {part.rsplit(" x", 1)[0]: int(part.rsplit(" x", 1)[1]) for part in tally.split(", ")} == {
        (a if a != "None" else "(no answer)"): n for a, n in counts.items()}
    winner = out.split("  majority: ")[1].split("  (truth")[0]
    assert winner != "None" and counts[winner] == max(n for a, n in counts.items() if a != "None")


def test_solve_reports_bad_input_clearly(tmp_path, capsys):
    assert main(["solve", "12+9", "--model", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_experts_shows_each_tokens_experts(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "moe.pt", GPT(make_config("tiny", ffn="moe", moe=dict(n_experts=4))))
    assert main(["experts", "12+9", "--model", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "prompt digit" in out and "layer 0 load over this text" in out and "layer 1" in out


def test_experts_on_a_dense_model_says_so(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "dense.pt", GPT(make_config("tiny")))
    assert main(["experts", "12+9", "--model", str(path)]) == 2
    assert "dense model" in capsys.readouterr().err


def test_the_cli_and_the_examples_share_one_problem_syntax(capsys):
    """--digits 1,2 --ops +,x is read the same way everywhere; anything else is named."""
    import importlib.util
    from pathlib import Path

    assert main(["train", "--out", "m.pt", "--ops", "+x"]) == 2
    assert "--ops must be comma-separated operations from + - x, got '+x'" in capsys.readouterr().err
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ex00", root / "examples" / "00_arithmetic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit):
        mod.main(["--ops", "+x"])
    assert "--ops must be comma-separated operations from + - x, got '+x'" in capsys.readouterr().err
# ------------------------------------------------ bad flags, before any work


@pytest.fixture
def no_training(monkeypatch):
    """Any bad flag must be caught before training: training here fails the test."""
    import toyds.cli.commands

    def train_supervised(*a, **k):
        raise AssertionError("training started before the flags were checked")

    monkeypatch.setattr(toyds.cli.commands, "train_supervised", train_supervised)


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"toyds {command}: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, says", [
    (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--batch-size", "-1"], "--batch-size must be an integer >= 1, got -1"),
    (["--problems", "0"], "--problems must be an integer >= 1, got 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--digits", "1,5"], "--digits must be comma-separated digit counts from 1 to 4, got '1,5'"),
    (["--digits", "1,a"], "--digits must be comma-separated digit counts from 1 to 4, got '1,a'"),
    (["--ops", "+,/"], "--ops must be comma-separated operations from + - x, got '+,/'"),
    (["--device", "cuda:99"], "--device 'cuda:99' is not usable here"),
])
def test_train_rejects_bad_flags_before_training(tmp_path, capsys, no_training, argv, says):
    assert main(["train", "--out", str(tmp_path / "m.pt"), *argv]) == 2
    assert says in one_line_error(capsys, "train")


def test_train_checks_out_before_training(tmp_path, capsys, no_training):
    import os

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["train", "--out", str(tmp_path / "fifo")]) == 2
    assert f"refusing to save a checkpoint over {tmp_path / 'fifo'}: it is a FIFO" in one_line_error(capsys, "train")
    assert main(["train", "--out", str(tmp_path / "notes.txt")]) == 2
    assert "it is a regular file but not a toyds checkpoint" in one_line_error(capsys, "train")
    with pytest.raises(AssertionError, match="training started"):  # --force: past the check, into training
        main(["train", "--out", str(tmp_path / "notes.txt"), "--force"])
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_train_force_replaces_a_regular_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine\n")
    args = ["train", "--out", str(tmp_path / "notes.txt"), "--steps", "1", "--problems", "20", "--digits", "1",
            "--threads", "1", "--force"]
    assert main(args) == 0
    from toyds.train.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "notes.txt")[2]["corpus"] == "think"


@pytest.mark.parametrize("argv, says", [
    (["--temperature", "nan"], "--temperature must be a finite number >= 0, got nan"),
    (["--temperature", "-1"], "--temperature must be a finite number >= 0, got -1.0"),
    (["--samples", "0"], "--samples must be an integer >= 1, got 0"),
    (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--device", "cuda:99"], "--device 'cuda:99' is not usable here"),  # the checkpoint is fine: never "corrupt"
])
def test_solve_rejects_bad_flags(tmp_path, capsys, argv, says):
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny")))
    assert main(["solve", "12+9", "--model", str(path), *argv]) == 2
    err = one_line_error(capsys, "solve")
    assert says in err and "corrupt" not in err


@pytest.mark.parametrize("digits", [200, 4998])  # 4,998: past Python's 4,300-digit limit on int(str)
@pytest.mark.parametrize("command", ["solve", "experts"])
def test_a_problem_too_long_for_the_model_gets_one_sentence(tmp_path, capsys, digits, command):
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny", ffn="moe")))
    assert main([command, "1" * digits + "+1", "--model", str(path)]) == 2
    err = one_line_error(capsys, command)
    assert (f"PROBLEM 111111111111...111111+1 has {digits + 2} characters, but this model's context holds 128 "
            f"tokens: a problem may have at most 125 characters") in err and "set_int_max_str_digits" not in err


@pytest.mark.parametrize("command", [["pipeline", "--quick"], ["experts", "12+9", "--model", "m.pt"]])
def test_every_command_checks_device_first(tmp_path, capsys, command):
    assert main([*command, "--device", "cuda:99"]) == 2
    assert "--device 'cuda:99' is not usable here" in one_line_error(capsys, command[0])


def test_quantize_prints_float_vs_int8_and_saves(tmp_path, capsys):
    import json

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny", block_size=32)))  # short: an untrained model never stops
    out, metrics = tmp_path / "q.pt", tmp_path / "q.json"
    assert main(["quantize", "--model", str(path), "--out", str(out), "--metrics", str(metrics), "--eval-per-digit",
                 "2", "--digits", "1,2", "--batch-sizes", "1,4", "--repeats", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "file size (KB)" in text and "decode tokens/s, batch 4" in text and "held-out accuracy" in text
    m = json.loads(metrics.read_text())
    for kind in ("float32", "int8"):
        assert {"file_bytes", "weight_bytes", "accuracy", "tokens_per_s_batch_1", "tokens_per_s_batch_4"} <= set(m[kind])
    assert m["int8"]["file_bytes"] < 0.35 * m["float32"]["file_bytes"]
    assert 0 <= m["same_completion"] <= 1 and m["max_abs_logit_diff"] < 0.1
    # the int8 file loads, and quantising it again is refused with a reason
    assert main(["quantize", "--model", str(out), "--threads", "1"]) == 2
    assert "already an int8 model" in capsys.readouterr().err


def test_quantize_checks_flags_before_work(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny")))
    assert main(["quantize", "--model", str(path), "--batch-sizes", "0,4"]) == 2
    assert "--batch-sizes '0,4'" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["quantize", "--model", str(path), "--out", str(tmp_path / "notes.txt")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"
