"""Mixture of experts: more parameters at the same compute, balanced, and specialised.

    python examples/01_moe.py --out runs/01

Trains tiny GPTs on the mixed arithmetic corpus (+, - and x, 1-4 digits, direct
answers, worked traces and untagged traces: toyds/arithmetic.py), every model at
the same number of *active* parameters per token and the same steps:

1. dense vs MoE. The dense model's feed-forward is one SwiGLU of width 96; the
   MoE's is 8 routed experts of width 32, top-2, plus 1 shared expert of width 32,
   so each token uses 3 x 32 = 96 hidden units either way. The MoE holds about
   twice the parameters. Validation loss, mean and spread over --seeds seeds.
2. Balancing: none vs the auxiliary loss vs DeepSeek-V3's bias. Max load / mean
   load, dead experts and load entropy on the validation set, and validation loss.
3. Specialisation: which experts take prompt digits, operators, tags, the digits
   of the worked trace and the digits of the answer (a table, and a heat-map).

Why this setting: the DeepSeekMoE claim is more parameters at the same compute,
which pays off where a model is short of capacity. A 2-layer model of width 32 on
three operations, four lengths and three completion styles is: there the MoE's
extra experts lower the loss in every seed I ran. At widths 48 and 64 (400 steps)
the dense model was as good or better: each routed expert sees only
a quarter of the tokens and learns more slowly per step, and a wider dense model is
not yet short of capacity at this budget.

Runs are independent, so --jobs 2 trains two at a time, one thread each.
Takes about 5 minutes on 2 laptop CPU cores (the README has the measured run).
With --out DIR: DIR/metrics.json with "dense" and "moe" ({"val_loss",
"val_loss_std", "params_total", "params_active"}), "balancing" ({"none",
"aux_loss", "bias"}: {"max_load_ratio", "dead_experts", "load_entropy",
"val_loss"}), "specialisation", and pictures when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from toyds import balance, plots
from toyds.arithmetic import build_corpus, sample_problems
from toyds.model import GPT, make_config
from toyds.routing import LoadCurve, specialisation, validation_load
from toyds.runs import add_common_args, add_problem_args, setup, write_metrics
from toyds.tokenizer import Tokenizer
from toyds.train import TrainConfig, encode_pairs, eval_loss, train_supervised


def build(kind: str, args, seed: int):
    """'dense', or 'moe-<balance>' with balance any of balance.recipes() (toyds/balance.py)."""
    torch.manual_seed(seed)
    shape = dict(n_layer=args.layers, dim=args.dim, hidden_dim=3 * args.expert_dim, n_head=4)
    if kind == "dense":
        return GPT(make_config("tiny", **shape))
    moe = dict(n_experts=args.experts, top_k=2, n_shared_experts=1, expert_dim=args.expert_dim,
               balance=kind.split("-", 1)[1], bias_update_speed=args.bias_speed, aux_loss_alpha=args.aux_alpha,
               seq_aux_alpha=args.seq_alpha)
    return GPT(make_config("tiny", ffn="moe", moe=moe, **shape))


def data(args):
    """The same corpus and validation set in every run (and every worker process)."""
    digits, ops = args.digits, args.ops
    train_pairs = build_corpus(sample_problems(20000, digits=digits, ops=ops, seed=0), "base", seed=0)
    val_pairs = build_corpus(sample_problems(args.val_problems, digits=digits, ops=ops, split="test", unique=True,
                                             allow_fewer=True),
                             "base", seed=1)
    return train_pairs, val_pairs


def train_run(kind: str, seed: int, args, threads: int) -> dict:
    """Train one model, return its figures (and, for seed 0, its weights and load curve)."""
    torch.set_num_threads(threads)
    tok = Tokenizer()
    train_pairs, val_pairs = data(args)
    model = build(kind, args, seed).to(args.device)
    curve = LoadCurve(layer=0, every=10)  # each expert's share of the first layer's tokens

    cfg = TrainConfig.recipe(args.steps, 3e-3, args.batch_size, seed)
    t0 = time.perf_counter()
    train_supervised(model, train_pairs, cfg, desc=f"{kind} seed {seed}", step_callback=curve,
                     progress=None if args.jobs == 1 else False)
    row = {"kind": kind, "seed": seed, "seconds": time.perf_counter() - t0,
           "val_loss": eval_loss(model, encode_pairs(val_pairs, tok), tok.pad_id),
           "params_total": model.params_total(), "params_active": model.params_active()}
    if kind != "dense":  # balance on the validation set: the worst layer
        layers = validation_load(model, [p + c for p, c in val_pairs])
        row["max_load_ratio"] = max(layer["max_load_ratio"] for layer in layers)
        row["dead_experts"] = max(layer["dead_experts"] for layer in layers)
        row["load_entropy"] = min(layer["load_entropy"] for layer in layers)
        row["per_layer"] = layers
    if seed == 0:
        row["curve"] = curve.points
        row["state"] = {k: v.cpu() for k, v in model.state_dict().items()}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--steps", type=int, default=500, help="training steps per model")
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per model (the spread is reported)")
    ap.add_argument("--layers", type=int, default=2, help="transformer blocks")
    ap.add_argument("--dim", type=int, default=32, help="model width D")
    ap.add_argument("--experts", type=int, default=8, help="routed experts E")
    ap.add_argument("--expert-dim", type=int, default=32, help="width of each expert; the dense FFN is 3x this")
    ap.add_argument("--bias-speed", type=float, default=0.001, help="gamma of DeepSeek-V3's bias update")
    ap.add_argument("--aux-alpha", type=float, default=0.01, help="alpha of the batch-wise auxiliary balancing loss")
    ap.add_argument("--seq-alpha", type=float, default=0.0001, help="alpha of V3's sequence-wise auxiliary loss")
    add_problem_args(ap, digits="1,2,3,4", ops="+,-,x")
    ap.add_argument("--val-problems", type=int, default=1000, help="held-out problems for the validation loss")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained side by side, one thread each (1 = in this process)")
    add_common_args(ap)
    args = ap.parse_args(argv)
    device = setup(args)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    t_start = time.perf_counter()
    _, val_pairs = data(args)
    val_texts = [p + c for p, c in val_pairs]

    rules = balance.recipes()  # every balancing rule in toyds/balance.py, and V3's combination
    kinds = ("dense", *(f"moe-{r}" for r in rules))
    todo = [(kind, seed) for seed in range(args.seeds) for kind in kinds]
    rows = []
    if args.jobs == 1:
        rows = [train_run(kind, seed, args, args.threads) for kind, seed in todo]
    else:  # independent runs side by side, one thread each: small models use cores better this way
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_run, kind, seed, args, 1) for kind, seed in todo]
            for f in tqdm(as_completed(futures), total=len(futures), desc=f"{len(todo)} runs, {args.jobs} at a time"):
                rows.append(f.result())
    runs = {k: sorted((r for r in rows if r["kind"] == k), key=lambda r: r["seed"]) for k in kinds}
    for kind in kinds:
        for r in runs[kind]:
            print(f"  {kind:<13} seed {r['seed']}: val loss {r['val_loss']:.4f} ({r['seconds']:.0f}s)"
                  + (f", max/mean load {r['max_load_ratio']:.2f}" if kind != "dense" else ""))
    load_curves = {k: runs[k][0]["curve"] for k in kinds}
    keep = build("moe-bias", args, 0)
    keep.load_state_dict(runs["moe-bias"][0]["state"])

    def summary(kind):
        rs = runs[kind]
        losses = [r["val_loss"] for r in rs]
        out = {"val_loss": statistics.mean(losses), "val_loss_std": statistics.stdev(losses) if len(rs) > 1 else 0.0,
               "val_losses": losses, "params_total": rs[0]["params_total"], "params_active": rs[0]["params_active"]}
        if kind != "dense":  # balance measures: worst layer, mean over seeds
            for k in ("max_load_ratio", "dead_experts", "load_entropy"):
                out[k] = statistics.mean(r[k] for r in rs)
        return out

    table = {k: summary(k) for k in kinds}
    dense, moe = table["dense"], table["moe-bias"]
    print(f"\n1. dense vs MoE at equal active parameters, {args.steps} steps, {args.seeds} seeds")
    print(f"{'':<8}{'params total':>14}{'active':>10}{'val loss':>12}{'spread (std)':>14}")
    for name, r in (("dense", dense), ("MoE", moe)):
        print(f"{name:<8}{r['params_total']:>14,}{r['params_active']:>10,}{r['val_loss']:>12.4f}{r['val_loss_std']:>14.4f}")
    gap = dense["val_loss"] - moe["val_loss"]
    spread = max(dense["val_loss_std"], moe["val_loss_std"])
    verdict = "larger than" if gap > spread else "NOT larger than"
    print(f"MoE - dense: {-gap:+.4f}, {verdict} the seed spread ({spread:.4f})")

    print("\n2. balancing (worst layer on the validation set, mean over seeds)")
    print(f"{'':<10}{'max/mean load':>15}{'dead experts':>14}{'load entropy':>14}{'val loss':>10}")
    for rule in rules:
        r = table[f"moe-{rule}"]
        print(f"{rule:<14}{r['max_load_ratio']:>11.2f}{r['dead_experts']:>14.1f}{r['load_entropy']:>14.3f}"
              f"{r['val_loss']:>10.4f}")

    classes, share = specialisation(keep, val_texts[:300], layer=0)
    cols = [f"e{e}" for e in range(share.shape[1])]
    print("\n3. specialisation (layer 0, bias-balanced, seed 0): share of each token class's assignments per expert")
    print(plots.text_heatmap(share.tolist(), classes, cols))
    top = {c: int(share[i].argmax()) for i, c in enumerate(classes)}
    print("favourite expert: " + ", ".join(f"{c} -> e{e} ({share[i, e]:.0%})" for i, (c, e) in enumerate(top.items())))

    pictures = []
    if args.out is not None:
        pictures.append(plots.heatmap(share.tolist(), classes, cols, args.out / "moe_specialisation.png",
                                      "layer 0: share of each token class per expert"))
        for k in ("moe-none", "moe-bias"):
            steps = [s for s, _ in load_curves[k]]
            pictures.append(plots.expert_load(steps, [l for _, l in load_curves[k]], args.out / f"load_{k[4:]}.png",
                                              f"layer 0 expert load, balance={k[4:]}"))
        pictures = [str(p) for p in pictures if p]
        for p in pictures:
            print(f"picture: {p}")
    seconds = time.perf_counter() - t_start
    print(f"\ntotal {seconds:.0f}s")
    write_metrics(args.out, {
        "dense": dense,
        "moe": moe,
        "moe_minus_dense": -gap,
        "balancing": {r: {x: table[f"moe-{r}"][x] for x in ("max_load_ratio", "dead_experts", "load_entropy", "val_loss",
                                                            "val_loss_std")} for r in rules},
        "specialisation": {"layer": 0, "classes": classes, "share": share.tolist()},
        "load_curves": {k[4:]: load_curves[k] for k in ("moe-none", "moe-bias")},
        "steps": args.steps, "seeds": args.seeds, "seconds": seconds, "pictures": pictures,
    })
    return table


if __name__ == "__main__":
    main()
