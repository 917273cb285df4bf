"""Scale out: experts spread over 2 processes, and data-parallel training, each checked against 1.

    torchrun --nproc_per_node 2 examples/06_distributed.py --out runs/06

(Started with plain `python examples/06_distributed.py ...` it relaunches itself
through `python -m torch.distributed.run --standalone --nproc_per_node 2`, so no
launcher is needed; --nproc changes the count.) Every rank builds the same models
from one seed, then:

1. expert parallelism: a MoE layer of E routed experts, E/W on each rank, runs
   this rank's rows of a batch (tokens travel to their experts' ranks through
   all_to_all_single and back), and the single-process layer runs the whole batch;
   it prints the largest difference in outputs and in gradients (input, experts,
   and gate + shared experts summed over ranks);
2. data parallelism: a tiny MoE GPT trains for --steps steps under DDP (each rank
   takes its rows of every global batch) and in one process on the same batches;
   it prints both losses and the largest parameter difference;
3. per rank, the token copies it sent to and received from each rank, and the
   share of the timed expert-parallel passes spent inside the exchange.

Every difference should be at most 1e-5 (float32). Takes 10-25 seconds on 2
laptop CPU cores, most of it starting the processes. With --out DIR, rank 0 writes
DIR/metrics.json: {"world_size": 2, "ep_max_abs_diff": x, "ep_grad_max_abs_diff": x,
"ddp_max_param_diff": x, "tokens_sent": [per rank], "tokens_received": [per rank],
"exchange_time_share": s, ...}. On GPUs: `--device cuda` (NCCL), and on several
machines torchrun's --nnodes, --node_rank and --rdzv_endpoint flags.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from toyds.core.model import GPT, make_config
from toyds.experiment.flags import HelpFormatter, add_common_args
from toyds.experiment.output import seed_everything, setup, write_metrics
from toyds.experiment.seeds import Claim, judge, report, summarise
from toyds.moe.config import MoEConfig
from toyds.moe.layer import MoE
from toyds.parallel.data_parallel import DataParallel
from toyds.parallel.distributed import all_reduce_grads, all_reduce_mean, init, is_main, teardown
from toyds.parallel.expert_parallel import ExpertParallelMoE
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus

HEADLINE = ["ep_max_abs_diff", "ep_grad_max_abs_diff", "ddp_max_param_diff", "exchange_time_share"]
CLAIMS = [Claim(f"{name} <= 1e-5 (float32 agreement with one process)", name, "<=", 1e-5)
          for name in ("ep_max_abs_diff", "ep_grad_max_abs_diff", "ddp_max_param_diff")]
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import make_optimizer


def without_nproc(argv: list[str]) -> list[str]:
    """argv minus --nproc N, in any spelling argparse accepts (--nproc=N, --np N, ...).

    torchrun reads every --option after the script's name too, and takes --nproc for
    an "ambiguous option" of its own (--nproc-per-node); the ranks do not need it.
    """
    out, skip_value = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip_value:
            skip_value = False
        elif len(name) > 2 and "--nproc".startswith(name):
            skip_value = "=" not in arg
        else:
            out.append(arg)
    return out


def relaunch(nproc: int, argv: list[str]) -> None:
    """Not started by torchrun: start nproc copies of this script through it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.abspath(__file__), *without_nproc(argv)]
    print("not started by torchrun; running:", " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        raise SystemExit(code)


def max_over_ranks(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def largest_diff(pairs) -> float:
    """max |a - b| over (a, b) tensor pairs; a grad that is None counts as zeros."""
    out = 0.0
    for a, b in pairs:
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        if a.numel():
            out = max(out, (a - b).abs().max().item())
    return out


def expert_parallel_check(args, rank, world, device) -> dict:
    """1. and 3.: the EP layer on my rows vs the single layer on all rows; then timed passes."""
    cfg = MoEConfig(dim=args.dim, n_experts=args.experts, top_k=args.top_k, n_shared_experts=1,
                    expert_dim=args.expert_dim, score_func="sigmoid", balance="bias")
    torch.manual_seed(args.seed)  # the same layer and batch on every rank
    moe = MoE(cfg).to(device)
    ep = ExpertParallelMoE(moe)
    X = torch.randn(args.tokens, cfg.dim, device=device)  # (N, D) the global batch
    # (N, D) an upstream gradient, as from a loss averaged over tokens: loss = sum(Y * G)
    G = torch.randn(args.tokens, cfg.dim, device=device) / args.tokens
    rows = torch.arange(args.tokens, device=device).tensor_split(world)[rank]  # my tokens

    X_ref = X.clone().requires_grad_()
    Y = moe(X_ref)  # single process, whole batch
    (Y * G).sum().backward()
    x = X[rows].clone().requires_grad_()
    y = ep(x)  # expert-parallel, my rows
    (y * G[rows]).sum().backward()

    out_diff = largest_diff([(y, Y[rows].detach())])
    all_reduce_grads(ep.replicated_parameters())  # gate and shared: sum over ranks, as DDP would
    ref_replicated = list(moe.gate.parameters()) + list(moe.shared_experts.parameters())
    grad_pairs = [(x.grad, X_ref.grad[rows])]
    grad_pairs += [(p.grad, q.grad) for p, q in zip(ep.replicated_parameters(), ref_replicated)]
    for local, i in zip(ep.experts, ep.expert_ids):  # my experts hold every rank's contribution
        grad_pairs += [(p.grad, q.grad) for p, q in zip(local.parameters(), moe.experts[i].parameters())]
    grad_diff = largest_diff(grad_pairs)
    load_equal = bool(torch.equal(ep.load, moe.load))

    # 3. timed passes: how much of a forward + backward is the exchange?
    ep.stats.reset()
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        (ep(x) * G[rows]).sum().backward()
    seconds = time.perf_counter() - t0
    return {
        "out_diff": max_over_ranks(out_diff),
        "grad_diff": max_over_ranks(grad_diff),
        "load_equal": load_equal,
        "tokens": len(rows),
        "sent": ep.stats.sent,  # copies to each rank, last forward
        "received": ep.stats.received,  # copies from each rank, last forward
        "exchange_share": ep.stats.seconds / seconds,
        "ep_seconds": seconds,
    }


def data_parallel_check(args, device) -> dict:
    """2.: the same tiny MoE GPT trained single-process and with DDP on the same global batches."""
    pairs = build_corpus(sample_problems(2000, digits=(1, 2), seed=args.seed), "direct", seed=args.seed)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, warmup=max(1, args.steps // 5), seed=args.seed)
    mcfg = make_config("tiny", ffn="moe", moe=dict(n_experts=4, balance="bias", balance_params={"bias": {"gamma": 0.01}}))
    make_optimizer(nn.Linear(1, 1), 1e-3, 0.0)  # the first AdamW imports torch._dynamo (~2 s): not timed
    torch.manual_seed(args.seed)
    single = GPT(mcfg).to(device)
    t0 = time.perf_counter()
    # every rank trains the reference (no communication): each can then check its own copy
    h_single = train_supervised(single, pairs, tcfg, desc="one process")
    t1 = time.perf_counter()
    torch.manual_seed(args.seed)
    model = GPT(mcfg).to(device)
    h_ddp = train_supervised(model, pairs, tcfg, desc="data parallel", parallel=DataParallel())
    t2 = time.perf_counter()
    diff = largest_diff(zip(model.parameters(), single.parameters()))
    bias_diff = largest_diff((a.gate.bias, b.gate.bias) for a, b in zip(model.moe_layers(), single.moe_layers()))
    return {
        "param_diff": max_over_ranks(diff),
        "bias_diff": max_over_ranks(bias_diff),
        "loss_single": h_single[-1]["loss"],
        "loss_ddp": h_ddp[-1]["loss"],
        "single_seconds": t1 - t0,
        "ddp_seconds": t2 - t1,
        "params_total": model.params_total(),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--nproc", type=int, default=2, help="processes to start when run without torchrun")
    ap.add_argument("--experts", type=int, default=8, help="routed experts E of the MoE layer (a multiple of W)")
    ap.add_argument("--top-k", type=int, default=2, help="routed experts per token K")
    ap.add_argument("--dim", type=int, default=64, help="model width D of the MoE layer")
    ap.add_argument("--expert-dim", type=int, default=64, help="hidden width of each expert")
    ap.add_argument("--tokens", type=int, default=1024, help="tokens in the MoE layer's global batch")
    ap.add_argument("--repeats", type=int, default=20, help="timed expert-parallel forward + backward passes")
    ap.add_argument("--steps", type=int, default=20, help="training steps, data-parallel and single-process")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch: sequences per step over all ranks")
    add_common_args(ap, threads=1)
    args = ap.parse_args(argv)
    if "WORLD_SIZE" not in os.environ:
        return relaunch(args.nproc, sys.argv[1:] if argv is None else list(argv))

    t_start = time.perf_counter()
    rank, world = init(args.device)
    device = setup(args)  # threads and seed: the same seed on every rank, so the same models
    main_rank = is_main()
    say = print if main_rank else (lambda *a, **k: None)  # only rank 0 prints
    say(f"{world} ranks, backend {dist.get_backend()}, {args.threads} thread(s) each")
    runs = []
    for seed in args.seeds:  # seeds run one after another: the ranks are the processes here
        args.seed = seed
        seed_everything(seed)
        runs.append(check_one_seed(args, rank, world, device, say))
    seconds = time.perf_counter() - t_start
    metrics = {**runs[0], "seeds": runs, "seed_list": list(args.seeds), "seconds": seconds}
    metrics["summary"] = summarise(runs, HEADLINE)
    metrics["claims"] = judge(runs, CLAIMS)
    if main_rank:
        report(list(args.seeds), metrics["summary"], metrics["claims"])
    say(f"\ntotal {seconds:.1f}s (after start-up)")
    if main_rank:
        write_metrics(args.out, metrics)
    teardown()
    return metrics


def check_one_seed(args, rank, world, device, say) -> dict:
    say(f"\n======== seed {args.seed} ========")
    ep = expert_parallel_check(args, rank, world, device)
    per_rank = [None] * world
    dist.all_gather_object(per_rank, ep)  # every rank's counts and timings, for rank 0 to print
    say(f"\n1. expert parallelism: E={args.experts} routed experts, {args.experts // world} per rank, "
        f"{args.tokens} tokens, top-{args.top_k}")
    say(f"   largest difference from one process: outputs {ep['out_diff']:.2e}, gradients {ep['grad_diff']:.2e}; "
        f"global load equal: {all(r['load_equal'] for r in per_rank)}")

    dp = data_parallel_check(args, device)
    shard_rows = [len(c) for c in torch.arange(args.batch_size).tensor_split(world)]
    say(f"\n2. data parallelism: tiny MoE GPT ({dp['params_total']:,} parameters), {args.steps} steps, "
        f"global batch {args.batch_size}, rows per rank {shard_rows}")
    say(f"   final loss: one process {dp['loss_single']:.6f}, data parallel {dp['loss_ddp']:.6f}")
    say(f"   largest parameter difference {dp['param_diff']:.2e}, gate bias difference {dp['bias_diff']:.2e}")
    say(f"   time: one process {dp['single_seconds']:.1f}s, data parallel {dp['ddp_seconds']:.1f}s")

    say(f"\n3. the exchange, per rank (last forward; time over {args.repeats} forward + backward passes)")
    say(f"   {'rank':>4} {'tokens':>7} {'sent':>6}" + "".join(f"{'to r' + str(r):>8}" for r in range(world))
        + f" {'received':>9}" + "".join(f"{'from r' + str(r):>8}" for r in range(world)) + "   time in exchange")
    for r, s in enumerate(per_rank):
        say(f"   {r:>4} {s['tokens']:>7} {sum(s['sent']):>6}" + "".join(f"{n:>8}" for n in s["sent"])
            + f" {sum(s['received']):>9}" + "".join(f"{n:>8}" for n in s["received"])
            + f"   {s['exchange_share']:.0%} of {s['ep_seconds']:.2f}s")
    share = all_reduce_mean({"share": ep["exchange_share"]})["share"]
    say(f"   mean share of time in the exchange: {share:.0%} (it includes waiting for the other rank)")
    return {
        "world_size": world,
        "ep_max_abs_diff": ep["out_diff"],
        "ep_grad_max_abs_diff": ep["grad_diff"],
        "ddp_max_param_diff": dp["param_diff"],
        "ddp_gate_bias_diff": dp["bias_diff"],
        "tokens_sent": [sum(s["sent"]) for s in per_rank],
        "tokens_received": [sum(s["received"]) for s in per_rank],
        "sent_matrix": [s["sent"] for s in per_rank],
        "exchange_time_share": share,
        "exchange_time_share_per_rank": [s["exchange_share"] for s in per_rank],
        "loss": {"single": dp["loss_single"], "ddp": dp["loss_ddp"]},
    }


if __name__ == "__main__":
    main()
