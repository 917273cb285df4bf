"""Chain of thought helps: the same tiny GPT, trained on answers vs worked traces.

    python examples/00_arithmetic.py --out runs/00

Trains one tiny model (0.11M parameters) twice at the same budget on addition
of 1-4 digit numbers: once on direct answers (`<answer>936</answer>`) and once on
worked column-by-column traces (`<think>7+9=16;4+8+1=13;...</think><answer>936
</answer>`), then prints greedy held-out accuracy by number of digits for both,
a few completions of each so you can watch them work, and their mistakes the way
a person reads them (`model says 47+38=75, truth 85`).

The direct model must carry every digit "in its head" within one forward pass
per output digit; the traced model writes its carries down. Lee et al. (2023,
"Teaching arithmetic to small transformers") saw the same with scratchpads.

Takes about 2 minutes on 2 laptop CPU cores (see README for the measured run).
With --out DIR it writes DIR/metrics.json:
{"accuracy": {"direct": {"1": a, ...}, "think": {"1": a, ...}}, "seconds": s, ...}
and the two checkpoints DIR/direct.pt and DIR/think.pt (for `toyds solve`).
"""

from __future__ import annotations

import argparse
import time

import torch

from toyds.arithmetic import build_corpus, sample_problems
from toyds.checkpoint import save_checkpoint
from toyds.evaluate import evaluate, format_table, print_mistakes
from toyds.model import GPT, make_config
from toyds.runs import add_common_args, add_problem_args, setup, write_metrics
from toyds.train import TrainConfig, train_supervised


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model size preset (tiny, small, medium)")
    ap.add_argument("--steps", type=int, default=700, help="optimiser steps per model")
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    ap.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (tiny models like it high)")
    ap.add_argument("--train-problems", type=int, default=20000, help="distinct training problems to draw from")
    ap.add_argument("--eval-per-digit", type=int, default=100, help="held-out problems per digit count")
    ap.add_argument("--show", type=int, default=3, help="completions and mistakes to print per model")
    add_problem_args(ap, digits="1,2,3,4")
    add_common_args(ap)
    args = ap.parse_args(argv)
    device = setup(args)
    digits = args.digits

    t_start = time.perf_counter()
    train = sample_problems(args.train_problems, digits=digits, ops=args.ops, seed=args.seed)
    test = sample_problems(args.eval_per_digit * len(digits), digits=digits, ops=args.ops, split="test", unique=True,
                           allow_fewer=True)  # the 21 held-out 1-digit sums, if more are asked
    cfg = TrainConfig.recipe(args.steps, args.lr, args.batch_size, args.seed)

    results, models = {}, {}
    for style in ("direct", "think"):
        torch.manual_seed(args.seed)  # the same initial weights for both
        model = GPT(make_config(args.preset)).to(device)
        t0 = time.perf_counter()
        train_supervised(model, build_corpus(train, style, seed=args.seed), cfg, desc=f"train {style}")
        secs = time.perf_counter() - t0
        res, records = evaluate(model, test, return_records=True)
        results[style], models[style] = res, model
        print(f"\n{style}: trained {args.steps} steps in {secs:.0f}s "
              f"({model.params_total():,} parameters); held-out accuracy {res['accuracy']:.3f}")
        for r in records[-args.show :]:  # a few problems, of mixed difficulty
            print(f"  {r['problem'].prompt()}{r['completion']}")
        print(" mistakes:")
        print_mistakes(records, args.show)
        res["train_seconds"] = secs

    levels = [str(d) for d in digits]
    print("\nheld-out accuracy (greedy) by number of digits:")
    print(format_table(results, levels))
    seconds = time.perf_counter() - t_start
    print(f"\ntotal {seconds:.0f}s")

    if args.out is not None:
        for style, model in models.items():
            save_checkpoint(args.out / f"{style}.pt", model, meta={"corpus": style, "accuracy": results[style]["accuracy"]})
    write_metrics(args.out, {
        "accuracy": {s: {d: results[s]["by_difficulty"][d]["accuracy"] for d in levels} for s in results},
        "accuracy_overall": {s: results[s]["accuracy"] for s in results},
        "train_seconds": {s: results[s]["train_seconds"] for s in results},
        "params_total": models["think"].params_total(),
        "seconds": seconds,
    })
    return results


if __name__ == "__main__":
    main()
