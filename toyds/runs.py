"""What every toyds example and benchmark does the same way: flags, checks, seeding, metrics.

Each script takes --device (CPU by default), --threads (set explicitly: these
machines have 2 shared cores, and torch's default can oversubscribe them),
--seed and --out DIR; `write_metrics` writes DIR/metrics.json with the figures
the script printed (atomically, through `write_json`, which the pipeline's stage
files use too). Every flag is checked when it is read (`at_least`, `number`, the
problem syntax), and `setup` checks --threads, --device and --out, so a bad value
is named before any training starts, never after minutes of it. The `toyds`
command checks its values once read (`check_at_least`, `check_finite`). Kept here
so the examples stay about their idea, not plumbing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import torch


def at_least(low: int):
    """An argparse type: an integer >= low, or an error naming the flag and the range."""

    def integer(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
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


# The `toyds` command (toyds/cli.py) checks every flag before any work starts, and a bad
# one gets one line naming the flag and what it may be (main prints it and exits with 2),
# never a traceback minutes later.


def check_at_least(flag: str, value: int, low: int = 1) -> None:
    if value < low:
        raise ValueError(f"{flag} must be an integer >= {low}, got {value}")


def check_finite(flag: str, value: float, low: float, low_ok: bool) -> None:
    if not (math.isfinite(value) and (value >= low if low_ok else value > low)):
        raise ValueError(f"{flag} must be a finite number {'>=' if low_ok else '>'} {low:g}, got {value}")


def add_common_args(parser: argparse.ArgumentParser, threads: int = 2, seeds: str | None = "1") -> None:
    """--device, --threads, --seed, --out, and (unless seeds=None) --seeds and --jobs (toyds/seeds.py)."""
    parser.add_argument("--device", default="cpu", help="torch device to run on (cpu, cuda, mps)")
    parser.add_argument("--threads", type=at_least(1), default=threads,
                        help="CPU threads for torch (torch.set_num_threads), shared by the --jobs processes")
    parser.add_argument("--seed", type=int, default=0, help="random seed for data, initialisation and sampling")
    parser.add_argument("--out", type=Path, default=None, help="directory for metrics.json (and checkpoints, pictures)")
    if seeds is not None:
        from toyds.seeds import add_seed_args

        add_seed_args(parser, seeds)


def whole_numbers(flag: str, example: str):
    """A parser for FLAG's comma-separated whole numbers >= 1 ('128,512' -> [128, 512]); a
    ValueError naming the flag, the text and an example otherwise. Wrap it in _arg_type for argparse."""

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in str(text).split(",")]
        if not all(p.isascii() and p.isdigit() and int(p) >= 1 for p in parts):
            raise ValueError(f"{flag} {text!r}: give whole numbers >= 1, comma-separated, e.g. {example}")
        return [int(p) for p in parts]

    parse.__name__ = f"{flag} values"
    return parse


def _arg_type(parse):
    """An argparse type from a parser that raises ValueError: its message becomes the error."""

    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def add_problem_args(parser: argparse.ArgumentParser, digits: str = "1,2,3", ops: str = "+") -> None:
    """--digits 1,2,3 --ops +,-,x: the one syntax for problems, for the CLI and every example."""
    from toyds.arithmetic import parse_digits, parse_ops

    parser.add_argument("--digits", type=_arg_type(parse_digits), default=parse_digits(digits),
                        help=f"difficulty levels: digits per operand, comma-separated (default {digits})")
    parser.add_argument("--ops", type=_arg_type(parse_ops), default=parse_ops(ops),
                        help=f"operations from + - x, comma-separated (default {ops})")
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


def setup(args, checkpoints: tuple[str, ...] = ()) -> torch.device:
    """Apply --threads and --seed; check --device and --out before any work. Returns the device.

    checkpoints: file names the script will save under --out; each must be free or a
    toyds checkpoint already (toyds/checkpoint.py: check_writable), checked now.
    """
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    try:
        device = check_device(args.device)
        if args.out is not None:
            check_out_dir(args.out)
            from toyds.checkpoint import check_writable

            for name in checkpoints:
                check_writable(args.out / name)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    return device


def check_out_dir(out: Path) -> Path:
    """--out must be a directory that exists or can be made, and that we may write in."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a directory (it is a file); give a directory for metrics.json")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out} cannot be created ({e.strerror}); give a directory you may write in") from e
    probe = out / f".toyds-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable ({e.strerror}); give a directory you may write in") from e
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _clean(x):
    """JSON-safe copy: tuples to lists, NaN/inf to None, tensors to numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _clean(x.item())
    return x


def write_json(path: Path, obj) -> Path:
    """Write obj as JSON atomically: beside the file, then renamed over it, so a
    reader (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2))
    tmp.replace(path)
    return path


def write_metrics(out: Path | None, metrics: dict) -> Path | None:
    """Write out/metrics.json (atomically) if --out was given."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / "metrics.json", metrics)
    print(f"wrote {path}")
    return path
