"""toyds/seeds.py: the summary and the claims, worked by hand."""

import math

import pytest

from toyds.seeds import Claim, judge, parse_seeds, summarise

RUNS = [{"after": {"accuracy": 0.5}, "p": 0.9}, {"after": {"accuracy": 0.7}, "p": 0.8},
        {"after": {"accuracy": 0.9}, "p": math.nan}]


def test_summary_by_hand():
    s = summarise(RUNS, ["after.accuracy"])["after.accuracy"]
    # mean 0.7; sample std sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2)
    assert (s["min"], s["max"], s["values"]) == (0.5, 0.9, [0.5, 0.7, 0.9])


def test_a_nan_figure_gives_nan_statistics_not_a_crash():
    s = summarise(RUNS, ["p"])["p"]
    assert all(math.isnan(s[k]) for k in ("mean", "std", "min", "max")) and s["values"][:2] == [0.9, 0.8]


def test_claims_count_seeds_and_nan_never_holds():
    v = judge(RUNS, [Claim("acc >= 0.7", "after.accuracy", ">=", 0.7), Claim("p > 0.5", "p", ">", 0.5)])
    assert v["acc >= 0.7"]["held"] == 2 and v["acc >= 0.7"]["of"] == 3
    assert v["p > 0.5"]["held"] == 2  # the NaN seed does not hold
    with pytest.raises(KeyError, match="no 'x'"):
        judge(RUNS, [Claim("x", "after.x", ">", 0)])
    with pytest.raises(ValueError, match="op must be one of"):
        Claim("bad", "p", "==", 1)


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,4,7") == [0, 4, 7]
    for bad in ("0", "1,1", "a", "-1"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
