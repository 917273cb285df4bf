"""Chapter 3, R1-Zero at toy scale: a base model learns to reason from rule-based rewards alone.

    python examples/03_r1_zero.py --out runs/03               # 1 seed
    python examples/03_r1_zero.py --out runs/03 --seeds 3     # the README's table
    python examples/03_r1_zero.py --task countdown --reward accuracy:1,format:0.5,length:0.001

1. Pretrain a base model on the task's mixed corpus: after `347+589=` it sometimes
   answers directly, sometimes thinks in <think> tags, sometimes without tags.
2. GRPO on training problems with the --reward rules (R1's: accuracy 1 + format 0.5).
   No trace is shown during RL: each completion is only told how good it was.
3. Before and after on held-out problems, by difficulty: greedy and sampled
   accuracy, format rate, think rate, length; pass@k; and the base *forced* to open
   with <think>. The honest lesson: RL mostly selects and sharpens what the base has.
4. The same RL driven by a learned reward model (toyds/rl/reward_model.py), a narrow
   judge trained on rule-labelled base samples and pushed hard (--rm-lr, no KL): its
   proxy reward beside the true accuracy it buys. The toy of why R1 chose rules.

Claims, per seed: after RL the format rate is >= 0.95, greedy accuracy rises by
>= 0.3, completions are longer on the hardest level than the easiest; the learned
reward's proxy exceeds its true accuracy by >= 0.15, and its true accuracy is below
the rules run's by >= 0.2. Time on 2 cores: README chapter 3; what was tried:
docs/lab/03_r1_zero.md. --advantages FILE drives GRPO with a workshop participant's
group_advantages.

With --out DIR: DIR/metrics.json with "before", "after", "by_difficulty", "history",
"learned_rm", "base_forced_think", "pass_at_k", "seeds", "summary", "claims"; the
first seed's DIR/base.pt and DIR/r1_zero.pt, and DIR/r1_zero_curves.png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

from toyds.core.model import PRESETS
from toyds.evaluate.accuracy import evaluate, format_table, pass_at_k
from toyds.experiment import plots
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, run_seeds
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.rl.reward_model import as_reward_fn, judge_agreement, judge_from_samples
from toyds.rl.reward_registry import add_reward_arg, resolve
from toyds.tasks.base import WEIGHTINGS
from toyds.tasks.registry import add_task_args, task_from_args
from toyds.train.checkpoint import load_checkpoint, save_checkpoint
from toyds.train.pretrain import BaseRecipe, pretrain_base
from toyds.train.trainer import OPTIMIZERS
from toyds.workshop.participant import advantages_file, load_function

KEYS = ("accuracy", "format_rate", "think_rate", "mean_length")
HEADLINE = ["before.accuracy", "after.accuracy", "gain", "after.format_rate", "length_hardest_minus_easiest",
            "base_forced_think.accuracy", "pass_at_k.before", "pass_at_k.after"]
CLAIMS = [
    Claim("after RL, format rate >= 0.95", "after.format_rate", ">=", 0.95),
    Claim("greedy accuracy gain >= 0.3", "gain", ">=", 0.3),
    Claim("after RL, completions are longer on the hardest level than the easiest", "length_hardest_minus_easiest",
          ">", 0.0),
]
RM_HEADLINE = ["learned_rm.proxy_reward", "learned_rm.true_accuracy", "learned_rm.proxy_minus_true",
               "rules_minus_learned_rm"]
RM_CLAIMS = [
    Claim("learned reward: proxy exceeds true accuracy by >= 0.15", "learned_rm.proxy_minus_true", ">=", 0.15),
    Claim("learned reward: true accuracy below the rules run's by >= 0.2", "rules_minus_learned_rm", ">=", 0.2),
]


def base_recipe(args) -> BaseRecipe:
    """1. the base: the task's mixed corpus, as --pretrain-* ask (toyds/train/pretrain.py)."""
    return BaseRecipe(preset=args.preset, steps=args.pretrain_steps, batch_size=args.pretrain_batch, lr=args.pretrain_lr,
                      problems=args.pretrain_problems, weighting=args.level_weighting, optimizer=args.optimizer,
                      block_size=args.block)


def snapshot(model, task, test, args, seed) -> tuple[dict, list[dict]]:
    """Greedy measures and records, plus sampled accuracy (mean over --samples at temperature 1)."""
    cap = args.max_new_tokens  # a rambling completion is cut where GRPO cuts it
    greedy, records = evaluate(model, task, test, return_records=True, max_new_tokens=cap)
    sampled = evaluate(model, task, test, temperature=1.0, samples=args.samples, seed=seed, max_new_tokens=cap)
    greedy["sampled_accuracy"] = sampled["accuracy"]
    for d, row in greedy["by_difficulty"].items():
        row["sampled_accuracy"] = sampled["by_difficulty"][d]["accuracy"]
    return greedy, records


def grpo_config(args, seed) -> GRPOConfig:
    return GRPOConfig(steps=args.grpo_steps, prompts_per_step=args.prompts, group_size=args.group, lr=args.lr,
                      beta=args.beta, max_new_tokens=args.max_new_tokens, seed=seed)


def learned_rm_run(base, task, rl_problems, test, args, seed):
    """4. Train r_phi on base samples labelled by the rule, then RL against r_phi."""
    t0 = time.perf_counter()
    rm, data = judge_from_samples(base, task, rl_problems[: args.rm_prompts], layers=args.rm_layers, dim=args.rm_dim,
                                  steps=args.rm_steps, max_new_tokens=args.max_new_tokens, seed=seed,
                                  desc=f"seed {seed}: RM")
    # how good a judge is it, on fresh base samples it was not trained on?
    agree = judge_agreement(rm, base, task, test, max_new_tokens=args.max_new_tokens, seed=seed + 2)
    print(f"\nseed {seed}, learned reward model: {data['positive']:.0f}/{data['texts']} positive labels; "
          f"agrees with the rule on {agree:.1%} of fresh base samples")

    policy = copy.deepcopy(base)
    cfg = dataclasses.replace(grpo_config(args, seed), steps=args.rm_grpo_steps, lr=args.rm_lr, beta=args.rm_beta)
    # the learned reward drives; the rules are measured beside it (measure_fn), never rewarded
    hist = train_grpo(policy, rl_problems, cfg, reward_fns=[as_reward_fn(rm)], measure_fn=task.measure,
                      desc=f"seed {seed}: grpo (learned reward)")
    res, records = evaluate(policy, task, test, return_records=True, max_new_tokens=args.max_new_tokens)
    proxy = sum(rm.score([r["problem"].prompt() + r["completion"] for r in records])) / len(records)
    return {"proxy_reward": proxy, "true_accuracy": res["accuracy"], "proxy_minus_true": proxy - res["accuracy"],
            "rm_agreement_on_base_samples": agree, "format_rate": res["format_rate"], "steps": len(hist),
            "seconds": time.perf_counter() - t0}, hist, records


def run(args, seed: int) -> dict:
    t_start = time.perf_counter()
    task = task_from_args(args)
    levels = list(task.levels)
    # 1. the base model
    if args.base:
        base, _, _ = load_checkpoint(args.base, args.device)
        print(f"seed {seed}: loaded base model from {args.base}")
    else:
        t0 = time.perf_counter()
        base = pretrain_base(task, base_recipe(args), seed, args.device, desc=f"seed {seed}: pretrain base")
        print(f"seed {seed}: pretrained base model ({base.params_total():,} parameters) in "
              f"{time.perf_counter() - t0:.0f}s")
    test = task.sample(args.eval_per_level * len(levels), "test", unique=True)  # small levels give what they hold
    rl_problems = task.sample(5000, "rl", seed=seed + 1000)
    before, _ = snapshot(base, task, test, args, seed)
    forced = evaluate(base, task, test, prefix="<think>", max_new_tokens=args.max_new_tokens)
    pk_before = pass_at_k(base, task, test, args.pass_k, seed=seed, max_new_tokens=args.max_new_tokens)

    # 2. R1-Zero: GRPO with rule-based rewards only, named on the command line (--reward accuracy:1,format:0.5)
    policy = copy.deepcopy(base)
    t0 = time.perf_counter()
    fns, weights = resolve(args.reward, task)
    history = train_grpo(policy, rl_problems, grpo_config(args, seed), reward_fns=fns, reward_weights=weights,
                         measure_fn=task.measure, desc=f"seed {seed}: grpo (rules)",
                         advantage_fn=load_function(args.advantages, "group_advantages") if args.advantages else None)
    rl_seconds = time.perf_counter() - t0
    after, records = snapshot(policy, task, test, args, seed)
    pk_after = pass_at_k(policy, task, test, args.pass_k, seed=seed, max_new_tokens=args.max_new_tokens)

    # 3. before and after
    print(f"\nseed {seed}: GRPO {args.grpo_steps} steps x {args.prompts} prompts x {args.group} samples in "
          f"{rl_seconds:.0f}s")
    for key in (*KEYS, "sampled_accuracy"):
        print(f"\n{key.replace('_', ' ')} on held-out problems (greedy unless it says sampled):")
        rows = {"base": before, "after RL": after}
        print(format_table({**rows, "base, forced <think>": forced} if key == "accuracy" else rows, levels, key,
                           task.level_unit))
    print("\nwhat the model writes after RL (hardest problems last):")
    for r in records[-args.show:] + records[:1]:
        print(f"  {r['problem'].prompt()}{r['completion']}")
    wrong = [r for r in records if r["accuracy"] < 1][: args.show]
    if wrong:
        print("still wrong:")
        for r in wrong:
            print(f"  {r['problem'].prompt()}{r['completion']}")
    print(f"\npass@{args.pass_k} (temperature 1): base {pk_before:.3f} -> after RL {pk_after:.3f};  "
          f"greedy pass@1: {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    print("  The lesson the R1 paper's own analysis shares: RL mostly *selects and sharpens* what the base\n"
          f"  can already do. Forced to open with <think>, the base already scores {forced['accuracy']:.3f}; "
          "pass@1 rises far more than pass@k.")

    # 4. the same run with a learned reward model
    learned, histories = None, {"rules": history}
    if not args.no_learned_rm:
        learned, rm_hist, rm_records = learned_rm_run(base, task, rl_problems, test, args, seed)
        histories["learned RM"] = rm_hist
        print(f"RL against the learned reward ({learned['steps']} steps): proxy reward {learned['proxy_reward']:.3f}, "
              f"held-out true accuracy {learned['true_accuracy']:.3f} (the rules run: {after['accuracy']:.3f})")
        print("  some of its completions:")
        for r in rm_records[-3:]:
            print(f"  {r['problem'].prompt()}{r['completion']}   accuracy {r['accuracy']:.0f}")
    print("\nover RL steps (training batches, sampled):")
    for key in ("reward", "accuracy", "format_rate", "mean_length"):
        print(plots.text_series(histories, key))
    picture = None
    if args.out is not None and seed == args.seeds[0]:
        picture = plots.rl_curves(histories, args.out / "r1_zero_curves.png")
        save_checkpoint(args.out / "base.pt", base, meta={"stage": "base", "seed": seed})
        save_checkpoint(args.out / "r1_zero.pt", policy, meta={"stage": "r1_zero", "seed": seed})

    pick = lambda m: {k: m[k] for k in (*KEYS, "sampled_accuracy", "mean_think_length")}
    by_level = {d: {"before": pick(before["by_difficulty"][d]), "after": pick(after["by_difficulty"][d])} for d in levels}
    metrics = {
        "before": pick(before), "after": pick(after), "gain": after["accuracy"] - before["accuracy"],
        "by_difficulty": by_level,
        "length_hardest_minus_easiest": by_level[levels[-1]]["after"]["mean_length"] - by_level[levels[0]]["after"]["mean_length"],
        "history": [{k: r[k] for k in ("step", "reward", "accuracy", "format_rate", "think_rate", "mean_length", "kl",
                                       "clip_frac", "zero_signal_share")} for r in history],
        "learned_rm": learned,
        "base_forced_think": {"accuracy": forced["accuracy"],
                              "by_difficulty": {d: forced["by_difficulty"][d]["accuracy"] for d in levels}},
        "pass_at_k": {"k": args.pass_k, "before": pk_before, "after": pk_after},
        "rl_seconds": rl_seconds, "seconds": time.perf_counter() - t_start,
        "picture": str(picture) if picture else None,
    }
    if learned is not None:
        metrics["rules_minus_learned_rm"] = after["accuracy"] - learned["true_accuracy"]
    return metrics


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="base model size preset")
    ap.add_argument("--base", type=str, default=None, help="load this base checkpoint instead of pretraining one")
    ap.add_argument("--pretrain-steps", type=at_least(1), default=750, help="base model pretraining steps")
    ap.add_argument("--pretrain-batch", type=at_least(1), default=64, help="sequences per base pretraining step")
    ap.add_argument("--pretrain-lr", type=number(0, 1, low_open=True), default=3e-3, help="base pretraining peak lr")
    ap.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS,
                    help="muon_attention: Muon for attention's matrices, AdamW for the rest (train/trainer.py)")
    ap.add_argument("--pretrain-problems", type=at_least(1), default=6000, help="problems in the base corpus")
    ap.add_argument("--level-weighting", default="harder", choices=WEIGHTINGS,
                    help="how the base corpus visits the levels: harder = level i of n, i times per cycle (half the "
                         "corpus from the hardest level); even = in turn")
    ap.add_argument("--grpo-steps", type=at_least(1), default=25, help="GRPO steps")
    ap.add_argument("--prompts", type=at_least(1), default=16, help="prompts per GRPO step")
    ap.add_argument("--group", type=at_least(2), default=8, help="completions per prompt (G)")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=1e-4, help="GRPO learning rate")
    ap.add_argument("--beta", type=number(0), default=0.05, help="KL weight to the reference (base) model")
    ap.add_argument("--max-new-tokens", type=at_least(1), default=48,
                    help="longest completion (a 3-digit sum's trace with its tags is 41 tokens; Countdown-lite needs 128)")
    ap.add_argument("--block", type=at_least(16), default=128, help="the model's context (Countdown-lite needs 320)")
    ap.add_argument("--eval-per-level", type=at_least(1), default=80, help="held-out problems per difficulty level")
    ap.add_argument("--samples", type=at_least(1), default=2, help="samples per problem for sampled accuracy")
    ap.add_argument("--pass-k", type=at_least(1), default=4, help="k for pass@k")
    ap.add_argument("--rm-prompts", type=at_least(1), default=300,
                    help="prompts sampled (x4) to train the learned reward model")
    ap.add_argument("--rm-steps", type=at_least(1), default=200, help="reward model training steps")
    ap.add_argument("--rm-layers", type=at_least(1), default=1, help="reward model transformer blocks (a narrow judge)")
    ap.add_argument("--rm-dim", type=at_least(8), default=32, help="reward model width (a multiple of 8)")
    ap.add_argument("--rm-grpo-steps", type=at_least(1), default=16, help="GRPO steps against the learned reward")
    ap.add_argument("--rm-lr", type=number(0, 1, low_open=True), default=2e-4,
                    help="GRPO learning rate against the learned reward (pushed harder than the rules run)")
    ap.add_argument("--rm-beta", type=number(0), default=0.0, help="KL weight of the learned-reward run")
    ap.add_argument("--no-learned-rm", action="store_true", help="skip step 4 (the learned reward model run)")
    ap.add_argument("--show", type=at_least(0), default=4, help="completions to print in full")
    ap.add_argument("--advantages", type=advantages_file, default=None, metavar="FILE",
                    help="a Python file defining group_advantages (the workshop exercise) to use instead of toyds's; "
                         "tried on an example when read")
    add_task_args(ap)
    add_reward_arg(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    task = task_from_args(args, ap)  # a bad --task, --digits, --ops or --reward is named now, before any work
    try:
        resolve(args.reward, task)
    except ValueError as e:
        ap.error(str(e))
    if args.rm_dim % 8:
        ap.error(f"argument --rm-dim: must be a multiple of 8 (4 heads of even size), got {args.rm_dim}")
    if args.base:
        try:  # a bad --base is named now, not after minutes
            load_checkpoint(args.base, "cpu")
        except (ValueError, FileNotFoundError) as e:
            ap.error(f"argument --base: {e}")
    setup(args, checkpoints=("base.pt", "r1_zero.pt"))
    headline, claims = HEADLINE + ([] if args.no_learned_rm else RM_HEADLINE), CLAIMS + ([] if args.no_learned_rm
                                                                                       else RM_CLAIMS)
    metrics = run_seeds(run, args, headline, claims)
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
