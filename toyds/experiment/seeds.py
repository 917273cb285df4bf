"""Results are about seeds, not a seed: run an experiment over several, and state its claims.

A model of 0.1M parameters trained for a few hundred steps sits on a knife edge:
whether it learns 3-digit carries by step 450 can depend on the seed, and so on the
laptop. So every toyds example runs through this module:

    --seeds 3  (or --seeds 0,4,7)   run the experiment once per seed
    --jobs J                        seeds run as J processes side by side, each
                                    with --threads / J threads (default: all at once)

then prints each seed's headline figures, their mean +- std (sample std) and range,
and each of the example's claims with the seeds it held on:

    mean +- std over seeds: x_bar = sum x_s / n,  s = sqrt(sum (x_s - x_bar)^2 / (n - 1))
    "after RL, format rate >= 0.95": held on 3 of 3 seeds (1.000, 1.000, 0.990)

metrics.json holds the first seed's metrics at the top level (each example's keys,
as its chapter names them), and "seeds" (every seed's full metrics), "summary"
({figure: {"mean", "std", "min", "max", "values"}}) and "claims" ({claim: {"held",
"of", "values"}}). A claim is data, not prose: a name, a figure and a test.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import math
import multiprocessing
import operator
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch

from toyds.experiment.output import seed_everything

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def figure(metrics: dict, path: str):
    """metrics["after"]["accuracy"] for path "after.accuracy"; a KeyError names the missing part."""
    x = metrics
    for part in path.split("."):
        if not isinstance(x, dict) or part not in x:
            raise KeyError(f"figure {path!r}: no {part!r} in the metrics")
        x = x[part]
    return x


@dataclass
class Claim:
    """What an example promises, checked on every seed: figure `path` `op` `threshold`."""

    name: str  # how it is printed, e.g. "after RL, format rate >= 0.95"
    path: str  # the figure, a dotted path into one seed's metrics, e.g. "after.format_rate"
    op: str  # ">=", ">", "<=" or "<"
    threshold: float  # what the figure is compared with

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Claim {self.name!r}: op must be one of {sorted(OPS)}, got {self.op!r}")

    def holds(self, metrics: dict) -> tuple[bool, float]:
        value = float(figure(metrics, self.path))
        return (math.isfinite(value) and OPS[self.op](value, self.threshold)), value






def summarise(runs: list[dict], headline: list[str]) -> dict:
    """{figure: {"mean", "std", "min", "max", "values"}} over seeds for each headline path.

    A figure that is NaN on some seed (a rate with nothing to count, e.g. the precision
    of checks when no check was made) gets NaN statistics, not a crash or a mean of the rest."""
    out = {}
    for path in headline:
        values = [float(figure(m, path)) for m in runs]
        if not all(math.isfinite(v) for v in values):  # an undefined figure (NaN) on a seed: no honest mean
            out[path] = {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "values": values}
            continue
        out[path] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "min": min(values), "max": max(values), "values": values}
    return out


def judge(runs: list[dict], claims: list[Claim]) -> dict:
    """{claim name: {"held": k, "of": n, "values": [...]}}."""
    out = {}
    for c in claims:
        results = [c.holds(m) for m in runs]
        out[c.name] = {"held": sum(ok for ok, _ in results), "of": len(runs), "values": [v for _, v in results]}
    return out


def _one(fn, args, seed: int, threads: int, quiet: bool = False):
    """One seed's run; with quiet, its printout is kept and returned, so seeds run side by side do not interleave."""
    torch.set_num_threads(threads)
    a = copy.copy(args)
    a.seed, a.threads = seed, threads
    seed_everything(seed)
    if not quiet:
        return fn(a, seed), ""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        metrics = fn(a, seed)
    return metrics, buf.getvalue() + f"(seed {seed}: {time.perf_counter() - t0:.0f}s)\n"


def _call_from_file(path: str, name: str, *args):
    spec = importlib.util.spec_from_file_location("_toyds_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)(*args)


def submit_by_file(pool: ProcessPoolExecutor, fn, *args):
    """pool.submit(fn, *args), with fn found again in the spawned process by its file and name, so a
    function of an example script works however the script was loaded: run with python (module
    __main__) or loaded by path (the tests). fn must be a module-level function."""
    return pool.submit(_call_from_file, inspect.getfile(fn), fn.__name__, *args)


def run_seeds(fn, args, headline: list[str], claims: list[Claim] = (), log=print) -> dict:
    """Run fn(args, seed) -> metrics for every seed in args.seeds; print and return the combined metrics.

    With more than one job the seeds run in spawned processes, so fn must be a
    module-level function of an importable module (an example script run with
    python is). Each seed's own output is printed by its process as it runs.
    """
    seeds = list(args.seeds)
    jobs = min(len(seeds), args.jobs or len(seeds))
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 0, got {args.jobs}")
    threads = max(1, args.threads // jobs)
    t0 = time.perf_counter()
    if jobs == 1:
        runs = [_one(fn, args, s, args.threads)[0] for s in seeds]
    else:
        log(f"{len(seeds)} seeds as {jobs} processes side by side, {threads} thread(s) each; "
            f"each seed's printout follows when it is done")
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_one, fn, args, s, threads, True): s for s in seeds}
            for f in as_completed(futures):
                log(f"seed {futures[f]} finished after {time.perf_counter() - t0:.0f}s")
            done = {futures[f]: f.result() for f in futures}
        for s in seeds:
            log(f"\n======== seed {s} ========\n{done[s][1]}", end="")
        runs = [done[s][0] for s in seeds]
    seconds = time.perf_counter() - t0
    summary = summarise(runs, headline)
    verdicts = judge(runs, claims)
    report(seeds, summary, verdicts, log)
    log(f"\n{len(seeds)} seed(s) in {seconds:.0f}s ({jobs} process(es), {threads} thread(s) each, "
        f"{os.cpu_count()} cores)")
    return {**runs[0], "seeds": runs, "seed_list": seeds, "summary": summary, "claims": verdicts,
            "seconds_all_seeds": seconds, "jobs": jobs, "threads_per_job": threads}


def report(seeds: list[int], summary: dict, verdicts: dict, log=print) -> None:
    if len(seeds) > 1:
        width = max(len(p) for p in summary) + 2
        log(f"\n{'figure':<{width}}" + "".join(f"{'seed ' + str(s):>10}" for s in seeds)
            + f"{'mean':>10}{'+- std':>9}{'min':>10}{'max':>10}")
        for path, s in summary.items():
            cells = "".join(f"{v:>10.4g}" for v in s["values"])
            log(f"{path:<{width}}{cells}{s['mean']:>10.4g}{s['std']:>9.2g}{s['min']:>10.4g}{s['max']:>10.4g}")
    if verdicts:
        log("\nclaims:")
        for name, v in verdicts.items():
            values = ", ".join(f"{x:.3g}" for x in v["values"])
            missed = "" if v["held"] == v["of"] else f"  <- missed on {v['of'] - v['held']}"
            log(f"  {name}: held on {v['held']} of {v['of']} seed(s) ({values}){missed}")
