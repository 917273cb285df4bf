"""The `toyds` command: train a model, watch it solve a problem, look inside.

    toyds train --corpus think --out runs/think.pt     # a tiny GPT on worked traces (~1 min)
    toyds solve "347+589" --model runs/think.pt        # its chain of thought, answer and rewards
    toyds solve "347+589" --model runs/think.pt --samples 16 --vote   # 16 samples and their majority vote
    toyds pipeline --out runs/pipeline                 # the whole R1 story (examples/05_pipeline.py)
    toyds experts "347+589" --model runs/pipeline/stages/base.pt   # which experts each token went to
    toyds quantize --model runs/pipeline/stages/student.pt          # the student as int8: size, speed, accuracy
    toyds check --list                                 # the workshop's exercises (workshop/README.md)
    toyds check advantages --file my_advantages.py     # check a participant's exercise
    toyds export runs/pipeline/stages/student.pt --out runs/student-hf     # a transformers folder (hf extra)
    toyds import runs/student-hf --out runs/student.pt                     # and back

Every subcommand runs on the CPU by default and takes --device. Every flag is checked
before any work starts: a bad one gets one line naming it and its valid range, and
exit code 2. `train` and `quantize` never replace anything at --out but a toyds
checkpoint (or, with --force, a regular file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toyds.cli.commands import cmd_check, cmd_experts, cmd_pipeline, cmd_solve, cmd_train
from toyds.cli.export import cmd_export, cmd_import
from toyds.cli.quantize import cmd_quantize
from toyds.core.model import PRESETS
from toyds.experiment.flags import add_seed_args, check_at_least, check_device
from toyds.pipeline.config import STUDENT_METHODS
from toyds.rl.reward_registry import R1
from toyds.tasks.base import STYLES
from toyds.tasks.registry import TASKS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")


def _task(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="arithmetic", choices=sorted(TASKS), help="the task (tasks/registry.py)")
    p.add_argument("--digits", default=None, help="arithmetic tasks: digits per operand, comma-separated (default 1,2,3)")
    p.add_argument("--ops", default=None, help="arithmetic tasks: operations from + - x, comma-separated (default +)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="toyds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("train", help="train a tiny GPT on a task's corpus and save it", formatter_class=fmt)
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--corpus", default="think", choices=STYLES, help="completion style (the task's corpus)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size")
    p.add_argument("--ffn", default="dense", choices=["dense", "moe"], help="feed-forward: dense SwiGLU or MoE")
    p.add_argument("--steps", type=int, default=700, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (tiny models like it high)")
    _task(p)
    p.add_argument("--problems", type=int, default=20000, help="training problems to draw")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a regular file that is not a checkpoint (never a folder, link or device)")
    _common(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("solve", help="show a model's chain of thought, answer and rewards", formatter_class=fmt)
    p.add_argument("problem", help="a problem such as 347+589, 902-45 or 347x8 (or '8,3,1 to 6' with --task countdown)")
    p.add_argument("--model", type=Path, required=True, help="checkpoint to load")
    _task(p)
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy; > 0 samples (default: 0 for one completion, 1 for several)")
    p.add_argument("--samples", type=int, default=1, help="completions to draw")
    p.add_argument("--vote", action="store_true",
                   help="after the completions, the majority vote over their answers (self-consistency)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    _common(p)
    p.set_defaults(fn=cmd_solve)

    p = sub.add_parser("experts", help="show which experts each token of a solution went to (MoE models)",
                       formatter_class=fmt)
    p.add_argument("problem", help="a problem such as 347+589")
    p.add_argument("--model", type=Path, required=True, help="checkpoint of an MoE model (e.g. runs/pipeline/stages/base.pt)")
    _task(p)
    _common(p)
    p.set_defaults(fn=cmd_experts)

    p = sub.add_parser("quantize", help="int8 copy of a model: file size, decode speed and accuracy vs float32",
                       formatter_class=fmt)
    p.add_argument("--model", type=Path, required=True, help="float32 checkpoint to quantise (e.g. a student)")
    p.add_argument("--out", type=Path, default=None, help="write the int8 checkpoint here; without it, only measure")
    p.add_argument("--metrics", type=Path, default=None, help="write the figures as JSON to this file")
    p.add_argument("--digits", default="1,2,3", help="held-out problems: digits per operand, comma-separated")
    p.add_argument("--ops", default="+", help="held-out problems: operations from + - x, comma-separated")
    p.add_argument("--eval-per-digit", type=int, default=100, help="held-out problems per digit count and operation")
    p.add_argument("--batch-sizes", default="1,64", help="prompts decoded together in the speed timings")
    p.add_argument("--repeats", type=int, default=3, help="timings per batch size and model (the median is shown)")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a regular file that is not a checkpoint (never a folder, link or device)")
    _common(p)
    p.set_defaults(fn=cmd_quantize)

    p = sub.add_parser("export", help="write a checkpoint as a transformers folder (the hf extra)", formatter_class=fmt)
    p.add_argument("model", type=Path, help="the toyds checkpoint to export")
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder (or an earlier export)")
    _common(p)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("import", help="read an exported transformers folder back into a toyds checkpoint",
                       formatter_class=fmt)
    p.add_argument("folder", type=Path, help="a folder `toyds export` wrote (perhaps trained on since)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a regular file that is not a checkpoint (never a folder, link or device)")
    _common(p)
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("pipeline", help="the whole R1 story: MoE base, R1-Zero, rejection sampling, distillation",
                       formatter_class=fmt)
    p.add_argument("--out", type=Path, default=Path("runs/pipeline"), help="directory for stages, metrics, pictures")
    p.add_argument("--quick", action="store_true", help="a small run (under 2 minutes) that still runs every stage")
    p.add_argument("--resume", action="store_true", help="skip stages already finished in --out (if their settings match)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _task(p)
    p.add_argument("--reward", default=R1, help="GRPO's rewards as name:weight pairs (rl/reward_registry.py)")
    p.add_argument("--student-method", default="sequence_kd", choices=STUDENT_METHODS,
                   help="how the student learns from R1-Zero: its text (sequence_kd, as R1), its text and logits "
                        "(logit_kd), or its text and then its grades of the student's own samples (on_policy)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one PipelineConfig setting, e.g. --set base_optimizer=adamw --set grpo_steps=40")
    _common(p)
    add_seed_args(p)
    p.set_defaults(fn=cmd_pipeline)

    p = sub.add_parser("check", help="check a workshop exercise: toyds check NAME [--file PATH], or --list",
                       formatter_class=fmt)
    p.add_argument("exercise", nargs="?", help="the exercise, e.g. advantages (toyds check --list names them all)")
    p.add_argument("--file", type=Path, default=None,
                   help="your Python file (default: the stub workshop/exercises/EXERCISE.py)")
    p.add_argument("--list", action="store_true", help="list the exercises and the toyds function each mirrors")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a case may run before it counts as a hang")
    _common(p)
    p.set_defaults(fn=cmd_check, threads=1)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_at_least("--threads", args.threads)
        check_device(args.device)  # the examples' check: "not usable here", never "corrupt checkpoint"
        return args.fn(args)
    except (ValueError, FileNotFoundError) as e:  # a bad flag, file or problem: named before any work
        print(f"toyds {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused (a full disk): one sentence, the previous file unchanged
        print(f"toyds {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
