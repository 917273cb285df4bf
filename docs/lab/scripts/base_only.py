"""Lab script of docs/lab/26: train only the pipeline's base stage and print its greedy and forced-<think> figures.

    python docs/lab/scripts/base_only.py SEED DIR [--set FIELD=VALUE ...]

One thread; appends one JSON line to DIR/base_only.jsonl and prints it.
"""
import json
import sys
import time
from pathlib import Path

import torch

from toyds.pipeline.config import PipelineConfig, parse_settings
from toyds.pipeline.pipeline import Run, stage_base

seed, out = int(sys.argv[1]), Path(sys.argv[2])
sets = [a for a in sys.argv[3:] if a != "--set"]
torch.set_num_threads(1)
cfg = PipelineConfig(seed=seed, **parse_settings(sets))
run = Run(out, cfg, "cpu", False, print)
test = run.task.sample(cfg.eval_per_level * len(run.task.levels), "test", unique=True)  # the pipeline's held-out set
t0 = time.perf_counter()
_, m = stage_base(run, test)  # its corpus from cfg.base_problems and cfg.base_weighting
row = {"seed": seed, "sets": sets, "greedy": m["accuracy"], "by_difficulty": m["by_difficulty"],
       "think_rate": m["think_rate"], "forced_think": m["forced_think"], "seconds": time.perf_counter() - t0}
print(json.dumps(row))
with open(out / "base_only.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
