"""The "aha moment" at toy scale: RL keeps self-verification where it pays, and trims it where it does not.

    python examples/07_aha.py --out runs/07                 # 1 seed
    python examples/07_aha.py --seeds 3 --out runs/07       # seeds 0, 1, 2: the README's table

Two runs of the same protocol, side by side, as two 1-thread processes:

1. Countdown-lite (toyds/countdown.py). A base model is pretrained on a corpus where
   most completions guess an expression in one pass and the rest search: try a
   candidate, work it out, compare it with what is needed ("ok" / "no"), and on
   "no" go back and try the next. Check drills (a trace cut just before a verdict)
   teach the comparison. Before any RL we measure the base, greedy and sampled: how
   often it checks and backtracks, and whether its checks are right (precision: an
   "ok" is a real solution; recall: a wrong try gets "no").
2. GRPO with reward = accuracy + 0.5 x format (rule-based, toyds/countdown.py and
   toyds/rewards.py) on problems the base never saw. No trace is shown during RL.
3. The same measures after RL, by difficulty (how many candidates solve the problem),
   the length and checking curves over RL steps, and completions printed in full,
   including a mistake the model catches itself ("... no, ... ok").
4. The contrast (toyds/addcheck.py): addition with optional one-line checks, where the
   worked trace is already reliable and the check does not pay. Same model size,
   same RL recipe; we report how often it checks before and after.

The lesson we want to be able to print, or honestly fail to print: RL keeps the
thinking that pays. The claims are stated in code (CLAIMS) and counted over seeds.

Takes about 6 minutes for one seed on 2 CPU cores (README has the measured run);
--seeds 3 about 3 times that. Writes DIR/metrics.json ("before", "after", "history",
"contrast", "seconds"; with --seeds also "seeds", "summary" and "claims"),
DIR/completions.jsonl (every held-out prompt with its greedy completion before and
after RL, per seed) and DIR/aha_curves.png when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from toyds import addcheck, countdown as cd, plots
from toyds.arithmetic import sample_problems as addition_problems
from toyds.evaluate import complete
from toyds.grpo import GRPOConfig, train_grpo
from toyds.model import GPT, make_config
from toyds.rewards import accuracy_reward, accuracy_reward_batch, format_reward_batch
from toyds.runs import add_common_args, seed_everything, setup, write_metrics
from toyds.tokenizer import Tokenizer
from toyds.train import TrainConfig, train_supervised

KEYS = ("accuracy", "verify_rate", "backtrack_rate", "mean_tries", "mean_length", "verify_precision",
        "verify_recall", "first_try_accuracy", "backtrack_if_first_wrong", "backtrack_if_first_right")
HISTORY_KEYS = ("step", "reward", "accuracy", "verify_rate", "backtrack_rate", "mean_tries", "mean_length", "kl")

# The rewards, as (function, weight) pairs: TRL's reward_funcs and reward_weights.
COUNTDOWN_REWARDS = [(cd.accuracy_batch, 1.0), (cd.format_batch, 0.5)]
ADDITION_REWARDS = [(accuracy_reward_batch, 1.0), (format_reward_batch, 0.5)]


def weighted(pairs):
    """[(fn, w), ...] -> reward functions whose sum is sum_i w_i fn_i (train_grpo adds them up)."""
    out = []
    for fn, w in pairs:
        def scaled(fn=fn, w=w, **kwargs):
            return [w * r for r in fn(**kwargs)]
        scaled.__name__ = f"{w}*{fn.__name__}"
        out.append(scaled)
    return out


def grpo_config(args, seed) -> GRPOConfig:
    return GRPOConfig(steps=args.grpo_steps, prompts_per_step=args.prompts, group_size=args.group, lr=args.lr,
                      beta=args.beta, max_new_tokens=args.max_new_tokens, loss_type=args.loss_type, seed=seed,
                      progress=args.workers == 1)


def new_model(args, seed) -> GPT:
    torch.manual_seed(seed)
    return GPT(make_config(args.preset, block_size=args.block, n_layer=args.layers))


# ------------------------------------------------------------ Countdown-lite


def countdown_snapshot(model, test, args, seed) -> tuple[dict, dict, list[str]]:
    """Greedy measures (by difficulty too), sampled measures, and the greedy completions."""
    greedy = complete(model, test, 0.0, max_new_tokens=args.max_new_tokens)
    sampled = complete(model, test, 1.0, samples=args.samples, max_new_tokens=args.max_new_tokens, seed=seed)
    return cd.measure(test, greedy), cd.measure([p for p in test for _ in range(args.samples)], sampled), greedy


def run_countdown(args, seed: int) -> dict:
    torch.set_num_threads(args.job_threads)
    seed_everything(seed)
    t0 = time.perf_counter()
    # 1. the base, in two phases: mostly search first (to learn the working and the checks),
    #    then mostly guesses (so that, greedy, the base prefers to answer directly)
    model = new_model(args, seed)
    problems = cd.sample_problems(args.pretrain_problems, seed=seed)
    for phase, (steps, share) in enumerate([(args.search_steps, args.search_phase_share),
                                            (args.mix_steps, args.search_share)]):
        corpus = cd.build_corpus(problems, share, args.drill_share, seed=seed + phase, shuffle=not args.canonical)
        train_supervised(model, corpus, TrainConfig.recipe(steps, args.pretrain_lr, args.batch, seed + phase,
                                                           length_buckets=8, progress=args.workers == 1),
                         desc=f"pretrain countdown, phase {phase + 1}")
    t_pre = time.perf_counter() - t0
    test = cd.sample_problems(args.eval_problems, split="test", unique=True)
    before, before_sampled, greedy_before = countdown_snapshot(model, test, args, seed)

    # 2. GRPO on problems the base never saw, rewards by rule only
    policy = copy.deepcopy(model)
    rl = cd.sample_problems(args.rl_problems, split="rl", seed=seed)
    t1 = time.perf_counter()
    history = train_grpo(policy, rl, grpo_config(args, seed), reward_fns=weighted(COUNTDOWN_REWARDS),
                         measure_fn=cd.measure, desc="grpo countdown")
    t_rl = time.perf_counter() - t1

    # 3. after
    after, after_sampled, greedy_after = countdown_snapshot(policy, test, args, seed)
    rows = [{"seed": seed, "prompt": p.prompt(), "numbers": list(p.numbers), "target": p.target,
             "difficulty": p.difficulty, "before": b, "after": a,
             "before_accuracy": cd.accuracy(b, p.numbers, p.target), "after_accuracy": cd.accuracy(a, p.numbers, p.target)}
            for p, b, a in zip(test, greedy_before, greedy_after)]
    return {
        "before": before, "after": after, "before_sampled": before_sampled, "after_sampled": after_sampled,
        "history": [{k: r.get(k) for k in HISTORY_KEYS} for r in history],
        "completions": rows, "params": model.params_total(),
        "seconds": {"pretrain": t_pre, "rl": t_rl, "total": time.perf_counter() - t0},
    }


# ------------------------------------------------------------- the contrast


def addition_measures(problems, texts) -> dict:
    """Per-step log of the contrast run: accuracy, check rate, length."""
    tok = Tokenizer()
    n = max(len(texts), 1)
    return {
        "accuracy": sum(accuracy_reward(t, p.answer) for p, t in zip(problems, texts)) / n,
        "check_rate": sum(addcheck.has_check(t) for t in texts) / n,
        "mean_length": sum(len(tok.encode(t)) for t in texts) / n,
    }


def run_contrast(args, seed: int) -> dict:
    torch.set_num_threads(args.job_threads)
    seed_everything(seed)
    t0 = time.perf_counter()
    digits = (1, 2, 3)
    model = new_model(args, seed)
    pre = addition_problems(args.pretrain_problems, digits=digits, seed=seed)
    corpus = addcheck.build_corpus(pre, addcheck.CheckMix(), seed=seed)
    train_supervised(model, corpus, TrainConfig.recipe(args.contrast_pretrain_steps, args.pretrain_lr, args.batch,
                                                       seed, length_buckets=8, progress=args.workers == 1),
                     desc="pretrain addition")
    test = addition_problems(args.eval_problems, digits=digits, split="test", unique=True)
    rl = addition_problems(5000, digits=digits, seed=seed + 1000)

    def snap(m):
        greedy = addition_measures(test, complete(m, test, 0.0, max_new_tokens=args.max_new_tokens))
        rep = [p for p in test for _ in range(args.samples)]
        sampled = addition_measures(rep, complete(m, test, 1.0, samples=args.samples,
                                                  max_new_tokens=args.max_new_tokens, seed=seed))
        return greedy, sampled

    g0, s0 = snap(model)
    policy = copy.deepcopy(model)
    cfg = grpo_config(args, seed)
    cfg.steps = args.contrast_grpo_steps
    history = train_grpo(policy, rl, cfg, reward_fns=weighted(ADDITION_REWARDS), measure_fn=addition_measures,
                         desc="grpo addition")
    g1, s1 = snap(policy)
    return {
        # check rate sampled at temperature 1 (the greedy base may never check); accuracy greedy
        "check_rate": {"before": s0["check_rate"], "after": s1["check_rate"]},
        "accuracy": {"before": g0["accuracy"], "after": g1["accuracy"]},
        "greedy": {"before": g0, "after": g1}, "sampled": {"before": s0, "after": s1},
        "history": [{k: r.get(k) for k in ("step", "reward", "accuracy", "check_rate", "mean_length")} for r in history],
        "seconds": time.perf_counter() - t0,
    }


def run_job(job):
    name, args, seed = job
    t = time.perf_counter()
    out = (run_countdown if name == "countdown" else run_contrast)(args, seed)
    print(f"  [{name} seed {seed}] done in {time.perf_counter() - t:.0f}s", flush=True)
    return name, seed, out


# ----------------------------------------------------------------- claims


def _get(m, *path):
    for k in path:
        m = m.get(k) if isinstance(m, dict) else None
    return m


CLAIMS = {
    # name: (what it says, value, holds?)
    "verification_becomes_the_majority": (
        "greedy completions that check: below half before RL, above half after",
        lambda r: (_get(r, "before", "verify_rate"), _get(r, "after", "verify_rate")),
        lambda v: v[0] < 0.5 < v[1]),
    "backtracking_rises": (
        "greedy completions that backtrack after a 'no': more after RL than before",
        lambda r: (_get(r, "before", "backtrack_rate"), _get(r, "after", "backtrack_rate")),
        lambda v: v[1] > v[0]),
    "accuracy_gain_0.2": (
        "greedy accuracy rises by at least 0.2",
        lambda r: _get(r, "after", "accuracy") - _get(r, "before", "accuracy"),
        lambda v: v >= 0.2),
    "final_beats_first_try": (
        "after RL the final answer is right more often than the first try",
        lambda r: (_get(r, "after", "first_try_accuracy"), _get(r, "after", "accuracy")),
        lambda v: v[1] > v[0]),
    "more_tries_when_scarce": (
        "after RL, more tries where one candidate solves it than where several do",
        lambda r: (_get(r, "after", "by_difficulty", "2+", "mean_tries"), _get(r, "after", "by_difficulty", "1", "mean_tries")),
        lambda v: v[1] > v[0]),
    "contrast_trims_checks": (
        "addition: RL lowers the (sampled) check rate",
        lambda r: (_get(r, "contrast", "check_rate", "before"), _get(r, "contrast", "check_rate", "after")),
        lambda v: v[1] < v[0]),
}


def evaluate_claims(per_seed: list[dict]) -> dict:
    out = {}
    for name, (text, value, holds) in CLAIMS.items():
        values = [value(r) for r in per_seed]
        ok = [bool(holds(v)) for v in values]
        out[name] = {"claim": text, "held": sum(ok), "of": len(ok), "values": values}
    return out


def summary(per_seed: list[dict]) -> dict:
    """mean, std, min, max over seeds of each headline figure."""
    figures = {}
    for when in ("before", "after"):
        for k in KEYS:
            figures[f"{when}.{k}"] = [_get(r, when, k) for r in per_seed]
    figures["contrast.check_rate.before"] = [_get(r, "contrast", "check_rate", "before") for r in per_seed]
    figures["contrast.check_rate.after"] = [_get(r, "contrast", "check_rate", "after") for r in per_seed]
    out = {}
    for k, vs in figures.items():
        vs = [v for v in vs if v is not None]
        if vs:
            out[k] = {"mean": statistics.fmean(vs), "std": statistics.pstdev(vs), "min": min(vs), "max": max(vs)}
    return out


# ------------------------------------------------------------------ printing


def fmt(v) -> str:
    return "  -  " if v is None else f"{v:5.3f}" if isinstance(v, float) else str(v)


def print_table(r: dict) -> None:
    print(f"  {'greedy, held-out':<26}{'base':>9}{'after RL':>10}   | sampled: {'base':>7}{'after':>8}")
    for k in KEYS:
        print(f"  {k:<26}{fmt(r['before'][k]):>9}{fmt(r['after'][k]):>10}   |          "
              f"{fmt(r['before_sampled'][k]):>7}{fmt(r['after_sampled'][k]):>8}")
    print("  by difficulty (solutions among the candidates), greedy: accuracy / tries / length / checks")
    for lv in cd.LEVELS:
        b, a = r["before"]["by_difficulty"].get(lv), r["after"]["by_difficulty"].get(lv)
        if b and a:
            print(f"    {lv:<4} base {fmt(b['accuracy'])} / {b['mean_tries']:.2f} / {b['mean_length']:5.1f} / "
                  f"{fmt(b['verify_rate'])}    after {fmt(a['accuracy'])} / {a['mean_tries']:.2f} / "
                  f"{a['mean_length']:5.1f} / {fmt(a['verify_rate'])}")


def print_completions(rows: list[dict], show: int) -> None:
    print("\n  before RL (greedy), then after RL, the same prompts:")
    for row in rows[:show]:
        print(f"    base  {row['prompt']}{row['before']}   accuracy {row['before_accuracy']:.0f}")
        print(f"    RL    {row['prompt']}{row['after']}   accuracy {row['after_accuracy']:.0f}")
    caught = [row for row in rows if row["after_accuracy"] == 1 and " no," in row["after"] + ";" or
              row["after_accuracy"] == 1 and " no;" in row["after"]]
    if caught:
        print("  a mistake caught (a 'no', then a try that hits), after RL:")
        for row in caught[:2]:
            print(f"    {row['prompt']}{row['after']}")
    false_ok = [row for row in rows if " ok" in row["after"] and row["after_accuracy"] == 0]
    if false_ok:
        print("  a check that said 'ok' to a wrong try, after RL:")
        print(f"    {false_ok[0]['prompt']}{false_ok[0]['after']}")


# ---------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1, help="run seeds --seed .. --seed+N-1 and count the claims")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each); 1 runs in this process")
    ap.add_argument("--preset", default="tiny", help="model size preset (toyds/model.py)")
    ap.add_argument("--layers", type=int, default=2, help="transformer blocks (overrides the preset's)")
    ap.add_argument("--block", type=int, default=320, help="block size: the longest corpus sequence must fit")
    ap.add_argument("--search-steps", type=int, default=1200, help="base pretraining phase 1 steps (mostly search)")
    ap.add_argument("--search-phase-share", type=float, default=0.9, help="share of search traces in phase 1")
    ap.add_argument("--mix-steps", type=int, default=600, help="base pretraining phase 2 steps (mostly guesses)")
    ap.add_argument("--contrast-pretrain-steps", type=int, default=600, help="addition base pretraining steps")
    ap.add_argument("--pretrain-lr", type=float, default=1e-2, help="pretraining peak learning rate")
    ap.add_argument("--batch", type=int, default=32, help="pretraining sequences per step")
    ap.add_argument("--pretrain-problems", type=int, default=20000, help="problems drawn for each base corpus")
    ap.add_argument("--search-share", type=float, default=0.35, help="share of search traces in phase 2")
    ap.add_argument("--drill-share", type=float, default=0.0, help="share of the corpus that is check drills")
    ap.add_argument("--canonical", action="store_true", help="search in a fixed order instead of a random one")
    ap.add_argument("--grpo-steps", type=int, default=60, help="GRPO steps (Countdown)")
    ap.add_argument("--contrast-grpo-steps", type=int, default=60, help="GRPO steps (addition)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per GRPO step")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    ap.add_argument("--lr", type=float, default=5e-4, help="GRPO learning rate")
    ap.add_argument("--beta", type=float, default=0.02, help="KL weight to the base model")
    ap.add_argument("--loss-type", default="grpo", help="grpo, dapo or dr_grpo token aggregation")
    ap.add_argument("--max-new-tokens", type=int, default=200, help="longest completion (a longer search is cut, reward 0)")
    ap.add_argument("--rl-problems", type=int, default=2000, help="RL prompts drawn (from the 'rl' split)")
    ap.add_argument("--eval-problems", type=int, default=120, help="held-out problems, balanced by difficulty")
    ap.add_argument("--samples", type=int, default=2, help="samples per problem for the sampled rates")
    ap.add_argument("--show", type=int, default=4, help="completions to print before and after")
    add_common_args(ap, threads=1)
    args = ap.parse_args(argv)
    setup(args)
    args.job_threads = args.threads
    t_start = time.perf_counter()
    seeds = list(range(args.seed, args.seed + args.seeds))
    jobs = [(name, args, s) for s in seeds for name in ("countdown", "contrast")]
    print(f"{len(jobs)} runs ({len(seeds)} seeds x Countdown + addition), {args.workers} at a time, "
          f"{args.threads} thread each")
    if args.workers == 1:
        results = [run_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(run_job, jobs))
    per_seed = []
    for s in seeds:
        r = next(o for n, ss, o in results if n == "countdown" and ss == s)
        r["contrast"] = next(o for n, ss, o in results if n == "contrast" and ss == s)
        per_seed.append(r)

    for s, r in zip(seeds, per_seed):
        c = r["contrast"]
        print(f"\n=== seed {s}: Countdown-lite ({r['params']:,} parameters; pretrain {r['seconds']['pretrain']:.0f}s, "
              f"RL {r['seconds']['rl']:.0f}s) ===")
        print_table(r)
        print_completions(r["completions"], args.show)
        print(f"\n  contrast, addition with optional checks: sampled check rate {c['check_rate']['before']:.3f} -> "
              f"{c['check_rate']['after']:.3f}; greedy accuracy {c['accuracy']['before']:.3f} -> "
              f"{c['accuracy']['after']:.3f}  ({c['seconds']:.0f}s)")

    first = per_seed[0]
    histories = {"countdown": first["history"],
                 "addition": [{**h, "verify_rate": h["check_rate"]} for h in first["contrast"]["history"]]}
    print("\nover RL steps (sampled training batches; for addition 'verify_rate' is the check rate):")
    for key in ("reward", "accuracy", "verify_rate", "mean_length"):
        print(plots.text_series(histories, key))
    picture = None
    if args.out is not None:
        picture = plots.rl_curves(histories, args.out / "aha_curves.png",
                                  keys=("mean_length", "verify_rate", "accuracy", "reward"))
        if picture:
            print(f"picture: {picture}")
        with open(args.out / "completions.jsonl", "w") as f:
            for r in per_seed:
                for row in r["completions"]:
                    f.write(json.dumps(row) + "\n")

    claims = evaluate_claims(per_seed)
    print(f"\nclaims, held on k of {len(seeds)} seed(s):")
    for name, c in claims.items():
        print(f"  {c['held']}/{c['of']}  {name}: {c['claim']}   values {c['values']}")
    seconds = time.perf_counter() - t_start
    print(f"\ntotal {seconds:.0f}s")

    def strip(r):
        return {k: v for k, v in r.items() if k != "completions"}

    metrics = {**strip(first), "seconds": seconds, "picture": str(picture) if picture else None,
               "claims": claims}
    if len(seeds) > 1:
        metrics["seeds"] = [{"seed": s, **strip(r)} for s, r in zip(seeds, per_seed)]
        metrics["summary"] = summary(per_seed)
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
