"""The whole R1 story in one command: MoE base, R1-Zero, rejection sampling, a small student.

    python examples/05_pipeline.py --out runs/pipeline            # the same as `toyds pipeline`
    python examples/05_pipeline.py --out runs/quick --quick       # every stage, small, for CI

Stages (toyds/pipeline.py): pretrain a sparse MoE base model on the mixed
arithmetic corpus; R1-Zero GRPO with accuracy + format rewards; rejection-sample
the RL model's reasoning; distil it into two small dense students (`student`,
fine-tuned on the kept text as R1 did, and `student_logit_kd`, which also matches
the RL model's next-token distributions); evaluate every model on the same
held-out problems.
Each stage saves a checkpoint and its metrics under DIR/stages; --resume skips the
finished ones. Ends with one table (total and active parameters, held-out accuracy
by difficulty, format rate, mean thinking length, training seconds) and the paths
of the pictures it drew (text tables instead, without matplotlib).

Takes about 8 minutes on 2 laptop CPU cores; --quick about 1 minute (the README has
the measured runs). With --out DIR: DIR/metrics.json with {"models": {"base"|"r1_zero"|
"student"|"student_logit_kd": {"params_total", "params_active", "accuracy", "format_rate",
"mean_think_length", "seconds"}}, "seconds_total": s}. Look inside afterwards:
    toyds solve "347+589" --model DIR/stages/r1_zero.pt
    toyds experts "347+589" --model DIR/stages/base.pt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from toyds.pipeline import QUICK, PipelineConfig, run_pipeline
from toyds.runs import add_common_args, add_problem_args, setup, write_metrics


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small settings that still run every stage (CI)")
    ap.add_argument("--resume", action="store_true", help="skip stages already finished in --out")
    defaults = PipelineConfig()
    for f in dataclasses.fields(PipelineConfig):
        if f.name in ("seed", "digits", "ops"):
            continue
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)), default=None,
                        help=f"override PipelineConfig.{f.name} (default {getattr(defaults, f.name)}; see toyds/pipeline.py)")
    add_problem_args(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/pipeline-quick" if args.quick else "runs/pipeline")
    device = setup(args)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)
                 if f.name not in ("seed", "digits", "ops") and getattr(args, f.name) is not None}
    cfg = PipelineConfig(**{**(QUICK if args.quick else {}), **overrides, "seed": args.seed,
                            "digits": args.digits, "ops": args.ops})
    metrics = run_pipeline(args.out, cfg, device=device, resume=args.resume)
    print(f"\ntotal {metrics['seconds_total']:.0f}s")
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
