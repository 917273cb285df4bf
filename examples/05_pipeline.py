"""Chapter 5, the whole R1 story in one command: MoE base, R1-Zero, rejection sampling, a small student.

    python examples/05_pipeline.py --out runs/pipeline                 # the same as `toyds pipeline`
    python examples/05_pipeline.py --out runs/pipeline --seeds 3       # the README's table
    python examples/05_pipeline.py --out runs/quick --quick            # every stage, small, for CI

Stages (toyds/pipeline/pipeline.py), on --task (arithmetic by default) with --reward
(R1's accuracy:1,format:0.5): pretrain a sparse MoE base on the task's mixed corpus;
R1-Zero GRPO with rule-based rewards only; rejection-sample the RL model's reasoning
(4 completions for each of 2,000 training problems, the distinct right ones kept);
distil it into a small dense `student` by SFT on the kept text, as R1 did
(--logit-kd adds `student_logit_kd`, which also matches the RL model's next-token
distributions); evaluate every model on the same held-out problems. Each stage saves
a checkpoint and its metrics under DIR/stages (DIR/seed-<s>/stages for later seeds);
--resume keeps a finished stage whose settings match. Ends with one table and the
pictures it drew (text tables without matplotlib). Every PipelineConfig field is a flag.

Claims, per seed: the student reaches >= 0.9 of the R1-Zero model's accuracy, and
R1-Zero beats its base by >= 0.3. Time on 2 cores: README chapter 5; why 4 samples
per problem and what else was tried: docs/lab/05_pipeline.md.

With --out DIR: DIR/metrics.json with {"models": {"base"|"r1_zero"|"student"
(|"student_logit_kd"): {"params_total", "params_active", "accuracy", "by_difficulty",
"format_rate", "mean_think_length", "seconds"}}, "samples", "seconds_total", "seeds",
"summary", "claims"}. Look inside afterwards:
    toyds solve "347+589" --model DIR/stages/r1_zero.pt
    toyds experts "347+589" --model DIR/stages/base.pt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from toyds.core.model import PRESETS
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import run_seeds
from toyds.pipeline.config import CLAIMS, QUICK, STUDENT_METHODS, PipelineConfig, headline
from toyds.pipeline.pipeline import run_seed
from toyds.rl.reward_registry import add_reward_arg, resolve
from toyds.tasks.base import WEIGHTINGS
from toyds.tasks.registry import add_task_args, task_from_args
from toyds.train.trainer import OPTIMIZERS

FLAG_TYPES = {int: at_least(1), float: number(0, low_open=True)}
CHOICES = {"base_preset": sorted(PRESETS), "student_preset": sorted(PRESETS), "base_weighting": WEIGHTINGS,
           "base_optimizer": OPTIMIZERS, "student_optimizer": OPTIMIZERS, "student_method": STUDENT_METHODS}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small settings that still run every stage (CI)")
    ap.add_argument("--resume", action="store_true", help="skip stages already finished in --out (if settings match)")
    defaults = PipelineConfig()
    for f in dataclasses.fields(PipelineConfig):
        if f.name in ("seed", "task", "digits", "ops", "reward"):  # the shared flags below
            continue
        value = getattr(defaults, f.name)
        kind = dict(type=FLAG_TYPES[type(value)]) if type(value) in FLAG_TYPES else dict(choices=CHOICES.get(f.name))
        if isinstance(value, bool):  # --logit-kd / --no-logit-kd
            kind = dict(action=argparse.BooleanOptionalAction)
        if f.name == "kd_alpha":  # a share: 0 is plain fine-tuning, 1 is KD alone
            kind = dict(type=number(0, 1))
        ap.add_argument(f"--{f.name.replace('_', '-')}", default=None, **kind,
                        help=f"override PipelineConfig.{f.name} (default {value}; see toyds/pipeline/config.py)")
    add_task_args(ap)
    add_reward_arg(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    task = task_from_args(args, ap)  # a bad --task, --digits, --ops or --reward is named before any work
    try:
        resolve(args.reward, task)
    except ValueError as e:
        ap.error(str(e))
    if args.out is None:
        args.out = Path("runs/pipeline-quick" if args.quick else "runs/pipeline")
    setup(args)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)
                 if f.name not in ("seed", "digits", "ops") and getattr(args, f.name, None) is not None}
    options = {k: getattr(task, k) for k in ("digits", "ops") if getattr(args, k) is not None}
    cfg = PipelineConfig(**{**(QUICK if args.quick else {}), **overrides, **options})
    args.config = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "seed"}
    metrics = run_seeds(run_seed, args, headline(args.config), CLAIMS)
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
