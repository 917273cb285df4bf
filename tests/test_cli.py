import pytest
import torch

from toyds.checkpoint import save_checkpoint
from toyds.cli import build_parser, main, parse_problem
from toyds.arithmetic import Problem
from toyds.model import GPT, make_config


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
    for cmd in ("train", "solve", "experts", "pipeline"):
        assert cmd in out


def test_solve_prints_thinking_answer_and_rewards(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny")))
    assert main(["solve", "12+9", "--model", str(path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "<bos>12+9=" in out and "truth 21" in out and "rewards: accuracy" in out


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

    args = build_parser().parse_args(["train", "--out", "m.pt", "--digits", "1,2", "--ops", "+,x"])
    assert args.digits == (1, 2) and args.ops == ("+", "x")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "m.pt", "--ops", "+x"])
    assert "ops '+x': write operations from + - x separated by commas" in capsys.readouterr().err
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ex00", root / "examples" / "00_arithmetic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit):
        mod.main(["--ops", "+x"])
    assert "ops '+x': write operations from + - x separated by commas" in capsys.readouterr().err
