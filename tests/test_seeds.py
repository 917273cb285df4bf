"""toyds/experiment/seeds.py: seeds parsed, summaries against hand-worked figures, claims counted per seed."""

import argparse
import importlib.util
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from toyds.experiment.flags import add_seed_args, parse_seeds
from toyds.experiment.seeds import Claim, figure, judge, run_seeds, submit_by_file, summarise


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("1", [0]), ("0,4,7", [0, 4, 7]), (" 5 , 2 ", [5, 2])])
def test_seeds_parse(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, says", [("0", "run at least one seed"), ("1,1", "repeats a seed"),
                                        ("-1", "give a count"), ("two", "give a count"), ("1.5", "give a count"),
                                        ("", "give a count"), ("٣", "give a count")])
def test_bad_seeds_are_named(text, says):
    with pytest.raises(ValueError, match=says) as e:
        parse_seeds(text)
    assert repr(text) in str(e.value)


def test_the_flag_says_what_is_valid(capsys):
    ap = argparse.ArgumentParser()
    add_seed_args(ap, seeds="3")
    assert ap.parse_args([]).seeds == [0, 1, 2]
    with pytest.raises(SystemExit):
        ap.parse_args(["--seeds", "0"])
    assert "run at least one seed" in capsys.readouterr().err


def test_summary_is_the_mean_and_sample_std_worked_by_hand():
    runs = [{"a": {"b": 1.0}}, {"a": {"b": 2.0}}, {"a": {"b": 6.0}}]
    s = summarise(runs, ["a.b"])["a.b"]
    # mean 3; deviations -2, -1, 3; sum of squares 14; sample variance 14 / 2 = 7
    assert s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(7))
    assert (s["min"], s["max"], s["values"]) == (1.0, 6.0, [1.0, 2.0, 6.0])
    assert summarise(runs[:1], ["a.b"])["a.b"]["std"] == 0.0  # one seed: no spread, not an error


def test_a_missing_figure_is_named():
    with pytest.raises(KeyError, match="figure 'a.c': no 'c'"):
        figure({"a": {"b": 1}}, "a.c")


def test_claims_count_the_seeds_they_held_on():
    runs = [{"gain": 0.5}, {"gain": 0.3}, {"gain": 0.29}, {"gain": float("nan")}]
    v = judge(runs, [Claim("gain >= 0.3", "gain", ">=", 0.3), Claim("gain > 0.3", "gain", ">", 0.3)])
    assert v["gain >= 0.3"]["held"] == 2 and v["gain >= 0.3"]["of"] == 4  # 0.5 and 0.3; a NaN never holds
    assert v["gain > 0.3"]["held"] == 1
    assert v["gain >= 0.3"]["values"][:3] == [0.5, 0.3, 0.29]


def test_a_claim_needs_a_known_comparison():
    with pytest.raises(ValueError, match="op must be one of"):
        Claim("x", "x", "=>", 1.0)


def square(args, seed):  # module level, so spawned processes can import it
    print(f"seed {seed} says hello")
    return {"x": float(seed * seed), "threads": args.threads}


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_seeds_runs_every_seed_and_keeps_the_first_at_the_top(jobs, capsys):
    args = argparse.Namespace(seeds=[3, 1], jobs=jobs, threads=2, seed=None)
    m = run_seeds(square, args, ["x"], [Claim("x >= 2", "x", ">=", 2.0)])
    assert m["x"] == 9.0 and [r["x"] for r in m["seeds"]] == [9.0, 1.0] and m["seed_list"] == [3, 1]
    assert m["summary"]["x"]["mean"] == 5.0 and m["claims"]["x >= 2"]["held"] == 1
    assert m["threads_per_job"] == (2 if jobs == 1 else 1)  # the threads are shared out among the processes
    out = capsys.readouterr().out
    assert "x >= 2: held on 1 of 2 seed(s)" in out and "missed on 1" in out
    if jobs == 1:
        assert "seed 3 says hello" in out


def test_a_nan_figure_gives_nan_statistics_not_a_crash():
    # a rate with nothing to count on one seed (07's precision when no check was made): no mean of the rest
    runs = [{"p": 0.9}, {"p": 0.8}, {"p": float("nan")}]
    s = summarise(runs, ["p"])["p"]
    assert all(math.isnan(s[k]) for k in ("mean", "std", "min", "max")) and s["values"][:2] == [0.9, 0.8]


def test_submit_by_file_runs_a_function_of_a_script_loaded_by_path(tmp_path):
    # a script loaded by path (as the tests load the examples) has no importable module name,
    # so plain pool.submit could not find its function in a spawned process
    script = tmp_path / "07_script.py"
    script.write_text("import os\n\ndef where(x):\n    return os.getpid(), 2 * x\n")
    spec = importlib.util.spec_from_file_location("07_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pid, doubled = submit_by_file(pool, module.where, 21).result()
        with pytest.raises(Exception):  # the known-bad case: plain submit cannot find the function
            pool.submit(module.where, 21).result()
    assert doubled == 42 and pid != __import__("os").getpid()
