"""What every toyds example and benchmark does the same way: flags, seeding, metrics.

Each script takes --device (CPU by default), --threads (set explicitly: these
machines have 2 shared cores, and torch's default can oversubscribe them),
--seed and --out DIR; `write_metrics` writes DIR/metrics.json with the figures
the script printed (atomically, through `write_json`, which the pipeline's stage
files use too). Kept here so the examples stay about their idea, not plumbing.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import numpy as np
import torch


def add_common_args(parser: argparse.ArgumentParser, threads: int = 2) -> None:
    parser.add_argument("--device", default="cpu", help="torch device to run on (cpu, cuda, mps)")
    parser.add_argument("--threads", type=int, default=threads, help="CPU threads for torch (torch.set_num_threads)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for data, initialisation and sampling")
    parser.add_argument("--out", type=Path, default=None, help="directory for metrics.json (and checkpoints, pictures)")


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


def setup(args) -> torch.device:
    """Apply --threads and --seed; check --device exists. Returns the device."""
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    try:
        device = check_device(args.device)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    return device


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
