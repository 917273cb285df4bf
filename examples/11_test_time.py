"""Chapter 11, test-time compute: sample N answers and choose one, against what RL bought.

    python examples/11_test_time.py --out runs/11 --seeds 3                  # the README's figure
    python examples/11_test_time.py --pipeline runs/pipeline --out runs/11   # reuse `toyds pipeline`'s models

Per seed:
1. The pipeline's models (toyds/pipeline): an MoE base, its R1-Zero, a distilled student,
   trained as `toyds pipeline --out DIR` trains them, or resumed from --pipeline DIR (its
   stages are kept when their settings match; later seeds use DIR/seed-<s>).
2. Chapter 3's learned judge: a small reward model fitted to rule-labelled samples of the base.
3. For each model, --max-n samples per held-out problem (temperature 1); for N = 1, 2, 4, ...
   the accuracy of four selectors over the first N (toyds/evaluate/test_time.py): majority
   vote, best-of-N by the rule (an oracle: pass@N), by the learned judge, and by the model's
   mean log-probability; per difficulty level, with the tokens N samples cost.
4. The questions: at what N does the base's majority vote reach R1-Zero's greedy accuracy (what
   RL bought, bought at test time instead)? Does best-of-N by the judge fall behind the plain
   vote (hacked at selection, as RL against it was in chapter 3)?

No claims are asserted: the figures answer the questions, with their spread over seeds.
Time on 2 cores: README chapter 11.

With --out DIR: DIR/metrics.json with "test_time" ({model: {selector: {N: {"accuracy",
"tokens", "by_difficulty"}}}}), "greedy" ({model: accuracy, tokens}), "base_vote_matches_rl_at",
"judge_minus_vote", "seeds", "summary"; DIR/test_time.png with matplotlib.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from toyds.evaluate.accuracy import evaluate
from toyds.evaluate.test_time import selection_curve
from toyds.experiment import plots
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import run_seeds
from toyds.pipeline.config import QUICK, PipelineConfig, task_of
from toyds.pipeline.pipeline import run_pipeline
from toyds.rl.reward_model import judge_agreement, judge_from_samples
from toyds.train.checkpoint import load_checkpoint

MODELS = ("base", "r1_zero", "student")


def sample_counts(max_n: int) -> list[int]:
    """N = 1, 2, 4, ... up to max_n."""
    return [2**k for k in range(max_n.bit_length()) if 2**k <= max_n]


def pipeline_dir(args, seed: int) -> Path:
    """Where this seed's pipeline lives: --pipeline itself for the first seed, DIR/seed-<s> for the others."""
    root = Path(args.pipeline) if args.pipeline else Path(args.out or "runs/11") / "pipeline"
    return root if seed == args.seeds[0] else root / f"seed-{seed}"


def run(args, seed: int) -> dict:
    t0 = time.perf_counter()
    # 1. the models: trained, or kept from a finished pipeline with the same settings
    cfg = PipelineConfig(**(QUICK if args.quick else {}), seed=seed)
    folder = pipeline_dir(args, seed)
    run_pipeline(folder, cfg, device=args.device, resume=True, log=lambda *a: print(f"seed {seed}:", *a))
    models = {name: load_checkpoint(folder / "stages" / f"{name}.pt", args.device)[0] for name in MODELS}
    task = task_of(cfg)
    test = task.sample(args.eval_per_level * len(task.levels), "test", unique=True)
    cap = task.completion_cap()
    # 2. the learned judge, fitted to the base's samples (chapter 3)
    judge, data = judge_from_samples(models["base"], task, task.sample(args.judge_prompts, "rl", seed=seed + 7),
                                     max_new_tokens=cap, seed=seed, desc=f"seed {seed}: judge")
    agree = judge_agreement(judge, models["base"], task, test, max_new_tokens=cap, seed=seed + 2)
    print(f"seed {seed}: the judge ({data['positive']:.0f}/{data['texts']} positive labels) agrees with the rule on "
          f"{agree:.1%} of fresh base samples")
    # 3. N samples, four selectors
    ns = sample_counts(args.max_n)
    out, greedy = {}, {}
    for name, model in models.items():
        g = evaluate(model, task, test, max_new_tokens=cap)
        greedy[name] = {"accuracy": g["accuracy"], "tokens": g["mean_length"],
                        "by_difficulty": {lv: r["accuracy"] for lv, r in g["by_difficulty"].items()}}
        curve = selection_curve(model, task, test, ns, max_new_tokens=cap, reward_model=judge, seed=seed)
        out[name] = {sel: {str(n): {"accuracy": c["accuracy"][i], "tokens": curve["tokens"][i],
                                    "by_difficulty": {lv: v[i] for lv, v in c["by_difficulty"].items()}}
                           for i, n in enumerate(ns)} for sel, c in curve["selectors"].items()}
        print(f"\nseed {seed}, {name}: greedy {g['accuracy']:.3f} ({g['mean_length']:.0f} tokens)")
        print(f"  {'N':>4} {'tokens':>7}" + "".join(f"{s:>14}" for s in curve["selectors"]))
        for i, n in enumerate(ns):
            print(f"  {n:>4} {curve['tokens'][i]:>7.0f}" + "".join(f"{c['accuracy'][i]:>14.3f}"
                                                                   for c in curve["selectors"].values()))
    # 4. the questions
    rl = greedy["r1_zero"]["accuracy"]
    match = next((n for n in ns if out["base"]["majority"][str(n)]["accuracy"] >= rl), None)
    top = str(ns[-1])
    gap = {m: out[m]["reward_model"][top]["accuracy"] - out[m]["majority"][top]["accuracy"] for m in MODELS}
    print(f"\nseed {seed}: the base's majority vote reaches R1-Zero's greedy {rl:.3f} at N = "
          f"{match if match else f'none up to {ns[-1]}'}; judge minus vote at N={top}: "
          + ", ".join(f"{m} {v:+.3f}" for m, v in gap.items()))
    return {"test_time": out, "greedy": greedy, "judge": {**data, "agreement": agree},
            "base_vote_matches_rl_at": match, "judge_minus_vote": gap, "ns": ns, "problems": len(test),
            "seconds": time.perf_counter() - t0}


def headline(ns: list[int]) -> list[str]:
    top = str(ns[-1])
    return ([f"greedy.{m}.accuracy" for m in MODELS]
            + [f"test_time.{m}.{s}.{top}.accuracy" for m in MODELS for s in ("majority", "oracle", "reward_model", "logprob")]
            + [f"judge_minus_vote.{m}" for m in MODELS])


def picture(args, metrics: dict):
    """Each selector's mean over seeds (+- std): against N and against tokens, then by difficulty level."""
    runs, ns = metrics["seeds"], metrics["ns"]

    def panels(x: str, level: str | None = None) -> dict:
        out = {}
        for m in MODELS:
            out[m] = {}
            for s in runs[0]["test_time"][m]:
                pts = [[r["test_time"][m][s][str(n)] for r in runs] for n in ns]
                acc = [[p["accuracy"] if level is None else p["by_difficulty"][level] for p in pt] for pt in pts]
                xs = ns if x == "n" else [statistics.mean(p["tokens"] for p in pt) for pt in pts]
                out[m][s] = {"x": xs, "accuracy": [statistics.mean(a) for a in acc],
                             "std": [statistics.stdev(a) if len(a) > 1 else 0.0 for a in acc]}
        return out

    def rl(lv: str | None) -> dict:  # the dashed line: R1-Zero's greedy accuracy, overall or at one level
        pick = lambda g: g["accuracy"] if lv is None else g["by_difficulty"][lv]
        return {"R1-Zero greedy": statistics.mean(pick(r["greedy"]["r1_zero"]) for r in runs)}

    rows = [("all levels", "samples N", panels("n"), rl(None)),
            ("all levels", "tokens generated per problem", panels("tokens"), rl(None))]
    rows += [(f"level {lv}", "samples N", panels("n", lv), rl(lv)) for lv in runs[0]["greedy"]["r1_zero"]["by_difficulty"]]
    return plots.selection_curves(rows, args.out / "test_time.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the pipeline's quick settings (`toyds pipeline --quick`): CI")
    ap.add_argument("--pipeline", default=None, help="a `toyds pipeline --out` folder to reuse (default: OUT/pipeline)")
    ap.add_argument("--max-n", type=at_least(1), default=32, help="samples per problem: N runs 1, 2, 4, ... up to this")
    ap.add_argument("--eval-per-level", type=at_least(1), default=50, help="held-out problems per difficulty level")
    ap.add_argument("--judge-prompts", type=at_least(1), default=300, help="problems the judge's base samples answer (x4)")
    add_common_args(ap)
    args = ap.parse_args(argv)
    setup(args)
    metrics = run_seeds(run, args, headline(sample_counts(args.max_n)))
    if args.out is not None:
        metrics["picture"] = str(picture(args, metrics))
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
