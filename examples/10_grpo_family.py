"""Chapter 10, GRPO's family as TRL 1.16 defines it, compared from one base with the same budget.

    python examples/10_grpo_family.py --out runs/10 --seeds 3                     # R1-Zero arithmetic
    python examples/10_grpo_family.py --task countdown --out runs/10-countdown --seeds 3

Per seed, one base is pretrained as chapter 3 (or, for Countdown-lite, chapter 7) pretrains it, then
every variant of --variants trains a copy of it on the same prompts, with the same rewards,
steps and learning rate (rl/grpo.py; each row of VARIANTS is GRPOConfig fields):

    grpo              loss_type="grpo": each completion's token mean, then the mean (the paper)
    dapo              loss_type="dapo": every token of the batch weighs the same (TRL's default)
    dr_grpo           loss_type="dr_grpo", scale="none": no length or std normalisation
    gspo              importance_sampling_level="sequence": one ratio per completion (GSPO)
    cispo             loss_type="cispo", epsilon_high=5: the clipped ratio, detached, weighs log pi
    sapo              loss_type="sapo": a soft sigmoid gate instead of the hard clip
    dapo_clip_higher  loss_type="dapo", epsilon_high=0.28 (DAPO's clip-higher)

Two policy steps per sampled batch (--updates, TRL's num_iterations): with one, every ratio
is exactly 1 and the variants that differ only in how they treat the ratio would coincide.
Per variant: greedy held-out accuracy after RL, mean completion length, mean token entropy
and clip fraction over training, wall time. A variant is called better only if its margin
over grpo exceeds the spread over seeds (`verdicts`); otherwise they tie.

With --out DIR: DIR/metrics.json with "variants" ({name: {"accuracy", "mean_length",
"entropy", "clip_frac", "seconds", "by_difficulty"}} per seed; the summary over seeds),
"base", "verdicts", "seeds", "summary". Time on 2 cores: README chapter 10.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

from toyds.core.model import PRESETS
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import run_seeds
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.rl.reward_registry import add_reward_arg, resolve
from toyds.tasks.registry import add_task_args, task_from_args
from toyds.train.pretrain import BaseRecipe, SearchRecipe, pretrain_base, pretrain_search_base

VARIANTS = {
    "grpo": dict(loss_type="grpo"),
    "dapo": dict(loss_type="dapo"),
    "dr_grpo": dict(loss_type="dr_grpo", scale="none"),
    "gspo": dict(loss_type="grpo", importance_sampling_level="sequence"),
    "cispo": dict(loss_type="cispo", clip_eps_high=5.0),
    "sapo": dict(loss_type="sapo"),
    "dapo_clip_higher": dict(loss_type="dapo", clip_eps_high=0.28),
}
FIGURES = ("accuracy", "mean_length", "entropy", "clip_frac", "seconds")


def run(args, seed: int) -> dict:
    task = task_from_args(args)
    t0 = time.perf_counter()
    if args.task == "countdown":  # chapter 7's base: searches first, then mostly guesses
        base = pretrain_search_base(task, SearchRecipe(), seed, args.device, desc=f"seed {seed}: pretrain")
    else:  # chapter 3's base: traces converged, greedy still direct
        recipe = BaseRecipe(preset=args.preset, steps=args.pretrain_steps, problems=args.pretrain_problems,
                            block_size=args.block)
        base = pretrain_base(task, recipe, seed, args.device, desc=f"seed {seed}: pretrain base")
    test = task.sample(args.eval_per_level * len(task.levels), "test", unique=True)
    prompts = task.sample(5000, "rl", seed=seed + 1000)
    fns, weights = resolve(args.reward, task)
    before = evaluate(base, task, test, max_new_tokens=args.max_new_tokens)
    out = {"base": {"accuracy": before["accuracy"], "seconds": time.perf_counter() - t0}, "variants": {}}
    print(f"seed {seed}: base greedy accuracy {before['accuracy']:.3f}")
    for name in args.variants:
        policy = copy.deepcopy(base)
        cfg = GRPOConfig(steps=args.grpo_steps, prompts_per_step=args.prompts, group_size=args.group, lr=args.lr,
                         beta=args.beta, max_new_tokens=args.max_new_tokens, updates_per_batch=args.updates, seed=seed,
                         **VARIANTS[name])
        t0 = time.perf_counter()
        hist = train_grpo(policy, prompts, cfg, reward_fns=fns, reward_weights=weights, measure_fn=task.measure,
                          desc=f"seed {seed}: {name}")
        seconds = time.perf_counter() - t0
        res = evaluate(policy, task, test, max_new_tokens=args.max_new_tokens)
        out["variants"][name] = {
            "accuracy": res["accuracy"], "mean_length": res["mean_length"],
            "entropy": statistics.mean(r["entropy"] for r in hist),  # mean token entropy over training
            "clip_frac": statistics.mean(r["clip_frac"] for r in hist), "seconds": seconds,
            "by_difficulty": {lv: r["accuracy"] for lv, r in res["by_difficulty"].items()}}
        v = out["variants"][name]
        print(f"seed {seed}: {name:<17} accuracy {v['accuracy']:.3f}  length {v['mean_length']:5.1f}  entropy "
              f"{v['entropy']:.3f}  clip {v['clip_frac']:.4f}  {seconds:.0f}s")
    return out


def verdicts(metrics: dict, variants: list[str]) -> dict:
    """Each variant against grpo: better or worse only if the mean difference exceeds the larger std over seeds."""
    s, out = metrics["summary"], {}
    for name in variants:
        if name == "grpo":
            continue
        a, b = s[f"variants.{name}.accuracy"], s["variants.grpo.accuracy"]
        margin, spread = a["mean"] - b["mean"], max(a["std"], b["std"])
        out[name] = {"minus_grpo": margin, "spread": spread,
                     "verdict": "tie" if abs(margin) <= spread else ("better" if margin > 0 else "worse")}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="base model size preset (arithmetic)")
    ap.add_argument("--pretrain-steps", type=at_least(1), default=800, help="base pretraining steps (arithmetic)")
    ap.add_argument("--pretrain-problems", type=at_least(1), default=6000, help="problems in the base corpus (arithmetic)")
    ap.add_argument("--grpo-steps", type=at_least(1), default=30, help="GRPO steps of every variant")
    ap.add_argument("--updates", type=at_least(1), default=2, help="policy steps per sampled batch (TRL's num_iterations)")
    ap.add_argument("--prompts", type=at_least(1), default=16, help="prompts per GRPO step")
    ap.add_argument("--group", type=at_least(2), default=8, help="completions per prompt (G)")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=None,
                    help="GRPO learning rate (default: chapter 3's 1e-4; chapter 7's 5e-4 for Countdown-lite)")
    ap.add_argument("--beta", type=number(0), default=None,
                    help="KL weight to the base (default: chapter 3's 0.05; chapter 7's 0.02 for Countdown-lite)")
    ap.add_argument("--max-new-tokens", type=at_least(1), default=None,
                    help="completion cap (default: 48 for arithmetic, 128 for the search traces of Countdown-lite)")
    ap.add_argument("--block", type=at_least(16), default=None,
                    help="the model's context (default: 128 for arithmetic, 320 for Countdown-lite)")
    ap.add_argument("--eval-per-level", type=at_least(1), default=None,
                    help="held-out problems per difficulty level (default 80; Countdown-lite 40: its test split holds "
                         "45 distinct problems where 3+ candidates solve it)")
    add_task_args(ap)
    add_reward_arg(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    task = task_from_args(args, ap)
    args.variants = [v.strip() for v in args.variants.split(",")]
    if bad := [v for v in args.variants if v not in VARIANTS]:
        ap.error(f"argument --variants: unknown {bad[0]!r}; variants are {', '.join(VARIANTS)}")
    if "grpo" not in args.variants:
        ap.error("argument --variants: include grpo, the baseline every verdict is against")
    search = args.task == "countdown"  # its search traces need the room (chapter 7)
    args.block = args.block or (320 if search else 128)
    args.max_new_tokens = args.max_new_tokens or (128 if search else 48)
    args.lr = args.lr or (5e-4 if search else 1e-4)
    args.beta = (0.02 if search else 0.05) if args.beta is None else args.beta
    args.eval_per_level = args.eval_per_level or (40 if search else 80)
    try:
        resolve(args.reward, task)
        task.sample(args.eval_per_level * len(task.levels), "test", unique=True)  # enough distinct problems?
    except ValueError as e:
        ap.error(f"{e} (--eval-per-level {args.eval_per_level}, --reward {args.reward!r})")
    setup(args)
    headline = [f"variants.{v}.{f}" for v in args.variants for f in FIGURES] + ["base.accuracy"]
    metrics = run_seeds(run, args, headline)
    metrics["verdicts"] = verdicts(metrics, args.variants)
    print("\nagainst grpo (better or worse only beyond the spread over seeds):")
    for name, v in metrics["verdicts"].items():
        print(f"  {name:<17} {v['minus_grpo']:+.3f} (spread {v['spread']:.3f}): {v['verdict']}")
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
