"""The flags every toyds script shares, each checked the moment it is read.

Every example and benchmark takes --device (CPU by default), --threads (set
explicitly: these machines have 2 shared cores, and torch's default can
oversubscribe them), --seed, --out DIR, and, for experiments, --seeds N and --jobs
(experiment/seeds.py). A bad value is named with its valid range before any work
starts, never after minutes of training:

    argument --lr: must be a finite number in (0, 1], got 'nan'

`at_least` and `number` are argparse types; `check_at_least`, `check_finite` and
`check_device` are the same checks for values the `toyds` command reads itself.
Nothing here imports the rest of toyds, so every module may use it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every flag's default in its help, and the script's docstring shown as written."""


def at_least(low: int, at_most: int | None = None):
    """An argparse type: an integer >= low (and <= at_most), or an error naming the flag and the range."""
    valid = f"an integer >= {low}" if at_most is None else f"an integer from {low} to {at_most}"

    def integer(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (at_most is not None and value > at_most):
            raise argparse.ArgumentTypeError(f"must be {valid}, got {text!r}")
        return value

    return integer


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the range (nan and inf are refused, never clipped)."""
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    valid = f"a finite number in {lo or '(-inf'}, {hi or 'inf)'}"

    def real(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {valid}, got {text!r}")
        return value

    return real


def whole_numbers(flag: str, example: str):
    """A parser for FLAG's comma-separated whole numbers >= 1 ('128,512' -> [128, 512]); a
    ValueError naming the flag, the text and an example otherwise. Wrap it in arg_type for argparse."""

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in str(text).split(",")]
        if not all(p.isascii() and p.isdigit() and int(p) >= 1 for p in parts):
            raise ValueError(f"{flag} {text!r}: give whole numbers >= 1, comma-separated, e.g. {example}")
        return [int(p) for p in parts]

    parse.__name__ = f"{flag} values"
    return parse


def arg_type(parse):
    """An argparse type from a parser that raises ValueError: its message becomes the error."""

    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def check_at_least(flag: str, value: int, low: int = 1) -> None:
    if value < low:
        raise ValueError(f"{flag} must be an integer >= {low}, got {value}")


def check_finite(flag: str, value: float, low: float, low_ok: bool) -> None:
    if not (math.isfinite(value) and (value >= low if low_ok else value > low)):
        raise ValueError(f"{flag} must be a finite number {'>=' if low_ok else '>'} {low:g}, got {value}")


def check_device(name, flag: str = "--device") -> torch.device:
    """The device `name` if torch can put a tensor on it here, else a ValueError naming `flag`.

    The one device check of toyds: the examples (through setup), the `toyds` command
    and load_checkpoint all use it, so "no CUDA here" always reads the same way.
    """
    try:
        device = torch.device(name)
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError, ValueError, TypeError) as e:  # a CPU-only torch asserts for cuda
        fix = f"{flag} cpu" if flag.startswith("--") else f"{flag}='cpu'"
        raise ValueError(f"{flag} {str(name)!r} is not usable here ({e}); try {fix}") from e
    return device


def parse_seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,4,7' -> [0, 4, 7]. A clear error for anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"--seeds {text!r}: give a count (3 runs seeds 0, 1, 2) or a list of seeds (0,4,7)")
    if len(parts) == 1:
        n = int(parts[0])
        if n < 1:
            raise ValueError(f"--seeds {text!r}: run at least one seed")
        return list(range(n))
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} repeats a seed")
    return seeds


def add_seed_args(parser: argparse.ArgumentParser, seeds: str = "1") -> None:
    parser.add_argument("--seeds", type=arg_type(parse_seeds), default=parse_seeds(seeds),
                        help="how many seeds to run (N runs seeds 0..N-1), or a list such as 0,4,7")
    parser.add_argument("--jobs", type=int, default=0,
                        help="seeds run side by side as this many processes (0 = all at once, up to the seed count)")


def add_common_args(parser: argparse.ArgumentParser, threads: int = 2, seeds: str | None = "1") -> None:
    """--device, --threads, --seed, --out, and (unless seeds=None) --seeds and --jobs (experiment/seeds.py)."""
    parser.add_argument("--device", default="cpu", help="torch device to run on (cpu, cuda, mps)")
    parser.add_argument("--threads", type=at_least(1), default=threads,
                        help="CPU threads for torch (torch.set_num_threads), shared by the --jobs processes")
    parser.add_argument("--seed", type=int, default=0, help="random seed for data, initialisation and sampling")
    parser.add_argument("--out", type=Path, default=None, help="directory for metrics.json (and checkpoints, pictures)")
    if seeds is not None:
        add_seed_args(parser, seeds)
