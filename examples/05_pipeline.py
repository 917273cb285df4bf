"""The whole R1 story in one command: MoE base, R1-Zero, rejection sampling, a small student.

    python examples/05_pipeline.py --out runs/pipeline                 # the same as `toyds pipeline`
    python examples/05_pipeline.py --out runs/pipeline --seeds 3       # the README's table
    python examples/05_pipeline.py --out runs/quick --quick            # every stage, small, for CI

Stages (toyds/pipeline.py): pretrain a sparse MoE base model on the mixed
arithmetic corpus; R1-Zero GRPO with accuracy + format rewards; rejection-sample
the RL model's reasoning (4 completions for each of 2,000 training problems, the
distinct right ones kept); distil it into a small dense `student`, fine-tuned on
the kept text as R1 did (--logit-kd adds `student_logit_kd`, which also matches the
RL model's next-token distributions; examples/04 compares the two); evaluate every
model on the same held-out problems. Each stage saves a checkpoint and its metrics
under DIR/stages (DIR/seed-<s>/stages for the second seed on); --resume skips a
finished stage whose settings match. Ends with one table (total and active
parameters, held-out accuracy by difficulty, format rate, mean thinking length,
training seconds) and the paths of the pictures it drew (text tables without
matplotlib).

Claims, per seed: the student reaches >= 0.9 of the R1-Zero model's accuracy, and
R1-Zero beats its base by >= 0.3. Why 4 samples per problem: with one, the kept
text is mostly the sums the RL model already gets right, and on a seed whose RL
model solves a quarter of the 3-digit sums the student saw only 160 distinct
3-digit traces (of 1,208) and reached 0.78-0.91 of its teacher (1 of 3 seeds, with
4,000 problems). With 4 samples it sees every sum the RL model solves at least
once in four tries (297-661 distinct 3-digit traces) and learns from the RL model's
pass@4, not its pass@1: that is rejection-sampling fine-tuning (Yuan et al. 2023),
and why the student can beat its teacher. GRPO and the sampling stop a completion
at the longest worked trace + 8 tokens (49), where a right answer always ends; the
logit-KD student is opt-in because three seeds with it took 12 minutes. The README
has the measured runs (three seeds in about 9 minutes on 2 cores; --quick about a
minute). With --out DIR: DIR/metrics.json with {"models": {"base"|"r1_zero"|
"student"(|"student_logit_kd"): {"params_total", "params_active", "accuracy",
"format_rate", "mean_think_length", "seconds"}}, "samples", "seconds_total",
"seeds", "summary", "claims"}.
Look inside afterwards:
    toyds solve "347+589" --model DIR/stages/r1_zero.pt
    toyds experts "347+589" --model DIR/stages/base.pt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from toyds.model import PRESETS
from toyds.pipeline import CLAIMS, QUICK, PipelineConfig, headline, run_seed
from toyds.runs import add_common_args, add_problem_args, at_least, number, setup, write_metrics
from toyds.seeds import run_seeds

FLAG_TYPES = {int: at_least(1), float: number(0, low_open=True)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small settings that still run every stage (CI)")
    ap.add_argument("--resume", action="store_true", help="skip stages already finished in --out (if settings match)")
    defaults = PipelineConfig()
    for f in dataclasses.fields(PipelineConfig):
        if f.name in ("seed", "digits", "ops"):
            continue
        value = getattr(defaults, f.name)
        kind = dict(type=FLAG_TYPES[type(value)]) if type(value) in FLAG_TYPES else dict(choices=sorted(PRESETS))
        if isinstance(value, bool):  # --logit-kd / --no-logit-kd
            kind = dict(action=argparse.BooleanOptionalAction)
        if f.name == "kd_alpha":  # a share: 0 is plain fine-tuning, 1 is KD alone
            kind = dict(type=number(0, 1))
        ap.add_argument(f"--{f.name.replace('_', '-')}", default=None, **kind,
                        help=f"override PipelineConfig.{f.name} (default {value}; see toyds/pipeline.py)")
    add_problem_args(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/pipeline-quick" if args.quick else "runs/pipeline")
    setup(args)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)
                 if f.name not in ("seed", "digits", "ops") and getattr(args, f.name) is not None}
    cfg = PipelineConfig(**{**(QUICK if args.quick else {}), **overrides, "digits": args.digits, "ops": args.ops})
    args.config = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "seed"}
    metrics = run_seeds(run_seed, args, headline(args.config), CLAIMS)
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
