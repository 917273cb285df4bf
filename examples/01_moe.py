"""Chapter 1, mixture of experts: more parameters at the same compute, balanced, and specialised.

    python examples/01_moe.py --out runs/01                # 3 seeds: the README's table

Trains tiny GPTs on the mixed arithmetic corpus (+, - and x, 1-4 digits, direct
answers, worked and untagged traces), every model at the same *active* parameters
per token and the same steps, once per seed:

1. dense vs MoE: a dense SwiGLU of width 96, or 8 routed experts of width 32 (top-2)
   plus 1 shared, so each token uses 96 hidden units either way; validation loss.
2. balancing: one MoE per rule of toyds/moe/balance.py (none, aux_loss, seq_aux,
   bias, and V3's bias+seq_aux), --balance-steps each: worst-layer max/mean load,
   dead experts, load entropy and validation loss. A new rule is a new row, and each
   of its fields a flag (--aux-loss-alpha, --seq-aux-alpha, --bias-gamma, ...).
3. specialisation: which experts take prompt digits, operators, tags, trace digits
   and answer digits (a table, and a heat-map).

Claims, per seed: the MoE's validation loss is below the dense model's, and the
bias rule's worst-layer max/mean load is <= 1.3; across seeds the MoE's mean loss is
below dense by more than the pooled std. Time on 2 cores: README chapter 1 (about 4
minutes); why this width and these steps: docs/lab/01_moe.md.

With --out DIR: DIR/metrics.json with "dense" and "moe" ({"val_loss", "params_total",
"params_active"}), "balancing" ({rule: {"max_load_ratio", "dead_experts",
"load_entropy", "val_loss"}}), "specialisation", "across_seeds", "seeds", "summary",
"claims", and the first seed's pictures when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from toyds.core.model import GPT, make_config
from toyds.core.tokenizer import Tokenizer
from toyds.experiment import plots
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, run_seeds
from toyds.moe import balance
from toyds.moe.routing import LoadCurve, specialisation, validation_load
from toyds.tasks.arithmetic import Arithmetic
from toyds.tasks.registry import add_arithmetic_args
from toyds.train.batches import encode_pairs
from toyds.train.supervised import TrainConfig, eval_loss, train_supervised

RULES = balance.recipes()  # every balancing rule in toyds/moe/balance.py, and V3's combination
HEADLINE = ["dense.val_loss", "moe.val_loss", "moe_minus_dense", "moe.max_load_ratio", *(f"balancing.{r}.max_load_ratio" for r in RULES)]
CLAIMS = [
    Claim("the MoE's validation loss is below the dense model's", "moe_minus_dense", "<", 0.0),
    Claim("the bias rule's worst-layer max/mean load is <= 1.3", "moe.max_load_ratio", "<=", 1.3),
]


def build(kind: str, args, seed: int):
    """'dense', or 'moe-<rule>' with rule any of balance.recipes()."""
    torch.manual_seed(seed)
    shape = dict(n_layer=args.layers, dim=args.dim, hidden_dim=3 * args.expert_dim, n_head=4)
    if kind == "dense":
        return GPT(make_config("tiny", **shape))
    rules = kind.split("-", 1)[1]  # each rule's settings come from its own flags (balance.add_rule_args)
    moe = dict(n_experts=args.experts, top_k=2, n_shared_experts=1, expert_dim=args.expert_dim, balance=rules,
               balance_params=balance.params_from_args(args, rules))
    return GPT(make_config("tiny", ffn="moe", moe=moe, **shape))


def data(args):
    """The same corpus and validation set for every model and seed: only the initialisation and batches differ."""
    task = Arithmetic(args.digits, args.ops)
    train_pairs = task.corpus(task.sample(20000, "train", seed=0), "base", seed=0)
    val = task.sample(args.val_problems, "test", unique=True)  # small cells give what they hold
    return train_pairs, task.corpus(val, "base", seed=1)


def train_one(kind: str, seed: int, args, train_pairs, val_pairs, steps: int) -> tuple[dict, object, list]:
    tok = Tokenizer()
    model = build(kind, args, seed).to(args.device)
    curve = LoadCurve(layer=0, every=10)  # each expert's share of the first layer's training tokens
    t0 = time.perf_counter()
    train_supervised(model, train_pairs, TrainConfig.recipe(steps, args.lr, args.batch_size, seed),
                     desc=f"seed {seed}: {kind} ({steps} steps)", step_callback=curve)
    row = {"seconds": time.perf_counter() - t0, "val_loss": eval_loss(model, encode_pairs(val_pairs, tok), tok.pad_id),
           "params_total": model.params_total(), "params_active": model.params_active()}
    if kind != "dense":  # balance on the validation set: the worst layer
        layers = validation_load(model, [p + c for p, c in val_pairs])
        row["max_load_ratio"] = max(layer["max_load_ratio"] for layer in layers)
        row["dead_experts"] = max(layer["dead_experts"] for layer in layers)
        row["load_entropy"] = min(layer["load_entropy"] for layer in layers)
        row["per_layer"] = layers
    print(f"  seed {seed} {kind:<18} {steps:>4} steps, val loss {row['val_loss']:.4f} ({row['seconds']:.0f}s)"
          + (f", worst-layer max/mean load {row['max_load_ratio']:.2f}" if kind != "dense" else ""))
    return row, model, curve.points


def run(args, seed: int) -> dict:
    """Train the dense model and the bias-balanced MoE for --steps, then one MoE per balancing rule for
    --balance-steps (the table), for one seed."""
    t_start = time.perf_counter()
    train_pairs, val_pairs = data(args)
    dense, _, _ = train_one("dense", seed, args, train_pairs, val_pairs, args.steps)
    moe, bias_model, moe_curve = train_one("moe-bias", seed, args, train_pairs, val_pairs, args.steps)
    rows, curves = {}, {}
    for r in RULES:  # the balancing table: every rule, at the table's budget
        if r == "bias" and args.balance_steps == args.steps:
            rows[r], curves[r] = moe, moe_curve  # the same run: no need to train it twice
        else:
            rows[r], _, curves[r] = train_one(f"moe-{r}", seed, args, train_pairs, val_pairs, args.balance_steps)
    classes, share = specialisation(bias_model, [p + c for p, c in val_pairs[:300]], layer=0)
    metrics = {
        "dense": dense,
        "moe": moe,
        "moe_minus_dense": moe["val_loss"] - dense["val_loss"],
        "balancing": rows,
        "balance_steps": args.balance_steps,
        "specialisation": {"layer": 0, "classes": classes, "share": share.tolist()},
        "load_curves": {r: curves[r] for r in ("none", "bias")},
        "seconds": time.perf_counter() - t_start,
    }
    if args.out is not None and seed == args.seeds[0]:
        metrics["pictures"] = pictures(args.out, metrics)
    return metrics


def pictures(out, m) -> list[str]:
    cols = [f"e{e}" for e in range(len(m["specialisation"]["share"][0]))]
    drawn = [plots.heatmap(m["specialisation"]["share"], m["specialisation"]["classes"], cols,
                           out / "moe_specialisation.png", "layer 0: share of each token class per expert")]
    for rule, points in m["load_curves"].items():
        drawn.append(plots.expert_load([s for s, _ in points], [shares for _, shares in points], out / f"load_{rule}.png",
                                       f"layer 0 expert load, balance={rule}"))
    return [str(p) for p in drawn if p]


def report(m: dict, args) -> dict:
    """The three tables, from every seed's figures; returns the across-seed comparison."""
    seeds = m["seeds"]
    n = len(seeds)
    stats = lambda path: (m["summary"][path]["mean"], m["summary"][path]["std"])
    (d_mean, d_std), (m_mean, m_std) = stats("dense.val_loss"), stats("moe.val_loss")
    print(f"\n1. dense vs MoE at equal active parameters, {args.steps} steps, {n} seed(s)")
    print(f"{'':<8}{'params total':>14}{'active':>10}{'val loss mean':>15}{'std':>9}")
    for name, key, mean, std in (("dense", "dense", d_mean, d_std), ("MoE", "moe", m_mean, m_std)):
        print(f"{name:<8}{m[key]['params_total']:>14,}{m[key]['params_active']:>10,}{mean:>15.4f}{std:>9.4f}")
    # pooled std = sqrt((s_dense^2 + s_moe^2) / 2)
    pooled = math.sqrt((d_std**2 + m_std**2) / 2)
    gap = d_mean - m_mean
    held = n > 1 and gap > pooled
    print(f"MoE - dense: {-gap:+.4f}; the pooled std over seeds is {pooled:.4f}: the MoE is "
          + ("better by more than the spread" if held else "NOT better by more than the spread"
             if n > 1 else "(one seed: no spread to compare with; run --seeds 3)"))
    print(f"\n2. balancing after {args.balance_steps} steps (worst layer on the validation set, mean over {n} seed(s))")
    print(f"{'rule':<14}{'max/mean load':>14}{'dead experts':>14}{'load entropy':>14}{'val loss':>10}")
    for r in RULES:
        mean = lambda k: sum(s["balancing"][r][k] for s in seeds) / n
        print(f"{r:<14}{mean('max_load_ratio'):>14.2f}{mean('dead_experts'):>14.1f}{mean('load_entropy'):>14.3f}"
              f"{mean('val_loss'):>10.4f}")
    spec = m["specialisation"]
    print(f"\n3. specialisation (layer 0, bias-balanced, seed {m['seed_list'][0]}): share of each token class's "
          f"assignments per expert")
    cols = [f"e{e}" for e in range(len(spec["share"][0]))]
    print(plots.text_heatmap(spec["share"], spec["classes"], cols))
    top = {c: max(range(len(row)), key=row.__getitem__) for c, row in zip(spec["classes"], spec["share"])}
    print("favourite expert: " + ", ".join(f"{c} -> e{e} ({spec['share'][i][e]:.0%})" for i, (c, e) in enumerate(top.items())))
    for p in m.get("pictures", []):
        print(f"picture: {p}")
    return {"moe_minus_dense_mean": -gap, "pooled_std": pooled, "held": held, "seeds": n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--steps", type=at_least(1), default=800, help="training steps per model")
    ap.add_argument("--balance-steps", type=at_least(1), default=300,
                    help="training steps of each MoE in the balancing table (one per rule)")
    ap.add_argument("--batch-size", type=at_least(1), default=64, help="sequences per step")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=3e-3, help="peak learning rate")
    ap.add_argument("--layers", type=at_least(1), default=2, help="transformer blocks")
    ap.add_argument("--dim", type=at_least(8), default=32, help="model width D (a multiple of 8: 4 heads of even size)")
    ap.add_argument("--experts", type=at_least(2), default=8, help="routed experts E")
    ap.add_argument("--expert-dim", type=at_least(1), default=32, help="width of each expert; the dense FFN is 3x this")
    balance.add_rule_args(ap, number(0))  # one flag per field of every rule: --bias-gamma, --aux-loss-alpha, ...
    ap.add_argument("--val-problems", type=at_least(1), default=500, help="held-out problems for the validation loss")
    add_arithmetic_args(ap, digits="1,2,3,4", ops="+,-,x")
    add_common_args(ap, seeds="3")
    args = ap.parse_args(argv)
    if args.dim % 8:
        ap.error(f"argument --dim: must be a multiple of 8 (4 heads of even size), got {args.dim}")
    setup(args)
    t_start = time.perf_counter()
    metrics = run_seeds(run, args, HEADLINE, CLAIMS)
    metrics["across_seeds"] = report(metrics, args)
    metrics["seconds"] = time.perf_counter() - t_start
    print(f"\ntotal {metrics['seconds']:.0f}s")
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
