"""Chapter 0, chain of thought helps: the same tiny GPT, trained on answers vs worked traces.

    python examples/00_arithmetic.py --out runs/00              # 1 seed
    python examples/00_arithmetic.py --out runs/00 --seeds 3    # the README's table

Trains one tiny model (0.11M parameters) twice on addition of 1-4 digit numbers:
once on direct answers (`<answer>936</answer>`, --direct-steps) and once on worked
column-by-column traces (`<think>7+9=16;4+8+1=13;...</think><answer>936</answer>`,
--steps), from the same initial weights. The direct model must carry every digit
"in its head"; the traced model writes its carries down (Lee et al. 2023 saw the
same with scratchpads).

Prints greedy held-out accuracy by number of digits for both, a few completions,
and mistakes the way a person reads them (`model says 47+38=75, truth 85`).
Claims, on every seed: worked traces reach >= 0.95 on 3-digit sums, and beat direct
answers there by >= 0.5. Time on 2 cores: README chapter 0 (about 2.5 minutes for
three seeds); what was tried to get here is docs/lab/00_chain_of_thought.md.

With --out DIR: DIR/metrics.json with "accuracy" ({"direct"|"think": {"1": a, ...}}),
"accuracy_overall", "think_minus_direct_3", "seconds", "seeds", "summary", "claims",
and the first seed's DIR/direct.pt and DIR/think.pt (`toyds solve "347+589" --model
DIR/think.pt` shows a chain of thought and the rewards it earns).
"""

from __future__ import annotations

import argparse
import time

import torch

from toyds.core.model import GPT, PRESETS, make_config
from toyds.evaluate.accuracy import evaluate, format_table, print_mistakes
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, run_seeds
from toyds.tasks.arithmetic import Arithmetic
from toyds.tasks.registry import add_arithmetic_args
from toyds.train.checkpoint import save_checkpoint
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import OPTIMIZERS

HEADLINE = ["accuracy.think.3", "accuracy.direct.3", "accuracy_overall.think", "accuracy_overall.direct"]
CLAIMS = [
    Claim("worked traces reach >= 0.95 on 3-digit sums", "accuracy.think.3", ">=", 0.95),
    Claim("traces beat direct answers on 3-digit sums by >= 0.5", "think_minus_direct_3", ">=", 0.5),
]


def run(args, seed: int) -> dict:
    """Train the direct and the traced model for one seed; return its figures."""
    t_start = time.perf_counter()
    task = Arithmetic(args.digits, args.ops)
    train = task.sample(args.train_problems, "train", seed=seed)
    test = task.sample(args.eval_per_digit * len(task.levels), "test", unique=True)  # all 21 held-out 1-digit sums
    results, models = {}, {}
    for style in ("direct", "think"):
        steps = args.direct_steps if style == "direct" else args.steps
        cfg = TrainConfig.recipe(steps, args.lr, args.batch_size, seed, optimizer=args.optimizer)
        torch.manual_seed(seed)  # the same initial weights for both
        model = GPT(make_config(args.preset)).to(args.device)
        t0 = time.perf_counter()
        train_supervised(model, task.corpus(train, style, seed=seed), cfg, desc=f"seed {seed}: {style}")
        secs = time.perf_counter() - t0
        res, records = evaluate(model, task, test, return_records=True)
        results[style], models[style] = res, model
        print(f"\nseed {seed}, {style}: trained {steps} steps in {secs:.0f}s "
              f"({model.params_total():,} parameters); held-out accuracy {res['accuracy']:.3f}")
        for r in records[-args.show:]:  # a few problems, of mixed difficulty
            print(f"  {r['problem'].prompt()}{r['completion']}")
        print(" mistakes:")
        print_mistakes(task, records, args.show)
        res["train_seconds"] = secs
    levels = list(task.levels)
    print(f"\nseed {seed}: held-out accuracy (greedy) by number of digits:")
    print(format_table(results, levels))
    if args.out is not None:
        where = args.out if seed == args.seeds[0] else args.out / f"seed-{seed}"
        for style, model in models.items():
            save_checkpoint(where / f"{style}.pt", model, meta={"corpus": style, "seed": seed,
                                                                  "accuracy": results[style]["accuracy"]})
    acc = {s: {d: results[s]["by_difficulty"][d]["accuracy"] for d in levels} for s in results}
    hardest = "3" if "3" in levels else levels[-1]
    return {
        "accuracy": acc,
        "accuracy_overall": {s: results[s]["accuracy"] for s in results},
        "think_minus_direct_3": acc["think"][hardest] - acc["direct"][hardest],
        "train_seconds": {s: results[s]["train_seconds"] for s in results},
        "params_total": models["think"].params_total(),
        "seconds": time.perf_counter() - t_start,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size preset")
    ap.add_argument("--steps", type=at_least(1), default=900, help="optimiser steps of the traced model")
    ap.add_argument("--direct-steps", type=at_least(1), default=500,
                    help="optimiser steps of the direct model (it stops improving by 500)")
    ap.add_argument("--batch-size", type=at_least(1), default=64, help="sequences per step")
    ap.add_argument("--optimizer", default="muon_attention", choices=OPTIMIZERS,
                    help="muon_attention: Muon for attention's matrices, AdamW for the rest (train/trainer.py)")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=1e-2,
                    help="peak learning rate (tiny models like it high)")
    ap.add_argument("--train-problems", type=at_least(1), default=20000, help="distinct training problems to draw from")
    ap.add_argument("--eval-per-digit", type=at_least(1), default=100, help="held-out problems per digit count")
    ap.add_argument("--show", type=at_least(0), default=3, help="completions and mistakes to print per model")
    add_arithmetic_args(ap, digits="1,2,3,4")
    add_common_args(ap)
    args = ap.parse_args(argv)
    setup(args, checkpoints=("direct.pt", "think.pt"))
    metrics = run_seeds(run, args, HEADLINE, CLAIMS)
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
