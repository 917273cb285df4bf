"""What every toyds script does before and after its work: seeding, checking --out, writing metrics.json.

`setup(args)` applies --threads and --seed and checks --device and --out (and the
checkpoint files the script will save there) before any training starts; a script
ends with `write_metrics(args.out, metrics)`, which writes DIR/metrics.json with
the figures it printed, under the keys its chapter names. Every JSON file toyds
writes goes through `write_json`: beside the file, then renamed over it, so a crash
leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from toyds.experiment.flags import check_device
from toyds.train.checkpoint import check_writable
from toyds.train.files import atomic_write


def setup(args, checkpoints: tuple[str, ...] = ()) -> torch.device:
    """Apply --threads and --seed; check --device and --out before any work. Returns the device.

    checkpoints: file names the script will save under --out; each must be free or a
    toyds checkpoint already (train/checkpoint.py: check_writable), checked now.
    """
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    try:
        device = check_device(args.device)
        if args.out is not None:
            check_out_dir(args.out)
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
    """Write obj as JSON atomically (train/files.py: a temp file beside it, renamed over it), so a
    reader, a crash or a full disk leaves the old file or the new one, never half of one."""
    data = json.dumps(_clean(obj), indent=2).encode()
    return atomic_write(path, lambda f: f.write(data), len(data))


def machine() -> str:
    """The machine a run was on, as a table names it: 'x86_64, 2 cores (AMD EPYC)'."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores ({model})"


def run_info() -> dict:
    """What made a metrics.json: the command, when, where, with which torch."""
    argv = ["toyds", *sys.argv[1:]] if Path(sys.argv[0]).name == "toyds" else ["python", *sys.argv]
    return {"command": " ".join(argv), "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def write_metrics(out: Path | None, metrics: dict) -> Path | None:
    """Write out/metrics.json (atomically) if --out was given."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / "metrics.json", {**metrics, "run": run_info()})
    print(f"wrote {path}")
    return path
