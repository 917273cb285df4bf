"""Is sparsity a saving? The MoE layer's speed against a dense FFN of the same active FLOPs.

    python examples/benchmarks/bench_moe.py --out runs/bench_moe

A token in an MoE layer with K routed and S shared experts of width H does the
work of a dense SwiGLU of width (K + S) * H; the rest is routing overhead (the
gate, sorting tokens by expert, gathering and scattering rows). This measures
forward + backward time of:

    dense       SwiGLU(D, (K + S) * H)                       the baseline
    loop        dispatch="loop", DeepSeek-V3's for-each-expert loop (the CPU default)
    sorted      copies sorted by expert, one matmul per contiguous block
    grouped_mm  the sorted layout through torch._grouped_mm, one kernel for all experts

for N = 512 and 4096 tokens, and the MoE's time as the number of experts grows
at fixed top-k (it should stay nearly flat: more experts, same work per token).
Each figure is the median of --repeats runs, the variants interleaved within a
repeat so load from elsewhere on a shared machine hits all of them. One thread by
default. About 1 minute on a laptop CPU. Prints the ratios; with --out DIR writes
DIR/metrics.json: {"moe_over_dense": {"512": r, "4096": r} (the default dispatch),
"loop_over_dense", "sorted_over_dense", "grouped_mm_over_dense" (the same, per dispatch),
"experts_scaling": {"8": seconds, ...}, "experts_scaling_ratio": t(64) / t(8)}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm.auto import tqdm

from toyds.core.layers import SwiGLU
from toyds.experiment.flags import HelpFormatter, add_common_args, arg_type, at_least, whole_numbers
from toyds.experiment.output import setup, write_metrics
from toyds.moe.config import MoEConfig
from toyds.moe.dispatch import grouped_mm_available, resolve_dispatch
from toyds.moe.layer import MoE
from toyds.train.trainer import show_progress


def fwd_bwd_seconds(layer, x: torch.Tensor, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
        layer(x).pow(2).mean().backward()
    return (time.perf_counter() - t0) / iters


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--dim", type=at_least(1), default=128, help="model width D")
    ap.add_argument("--expert-dim", type=at_least(1), default=128, help="hidden width H of each expert")
    ap.add_argument("--experts", type=at_least(2), default=8, help="routed experts E for the MoE vs dense comparison")
    ap.add_argument("--top-k", type=at_least(1), default=2, help="routed experts per token K")
    ap.add_argument("--shared", type=at_least(0), default=1, help="shared experts S")
    ap.add_argument("--tokens", type=arg_type(whole_numbers("--tokens", "512,4096")), default="512,4096", help="comma-separated token counts N")
    ap.add_argument("--scaling-experts", type=arg_type(whole_numbers("--scaling-experts", "8,64")), default="8,16,32,64", help="expert counts for the scaling run (at N = largest --tokens)")
    ap.add_argument("--iters", type=at_least(1), default=5, help="forward+backward passes per timed run")
    ap.add_argument("--repeats", type=at_least(1), default=7, help="timed runs per figure; the median is reported")
    add_common_args(ap, threads=1, seeds=None)
    args = ap.parse_args(argv)
    device = setup(args)
    D, H, K, S = args.dim, args.expert_dim, args.top_k, args.shared

    def moe(E, dispatch="auto"):
        cfg = MoEConfig(dim=D, n_experts=E, top_k=K, n_shared_experts=S, expert_dim=H, balance="none",
                        dispatch=dispatch)
        return MoE(cfg).to(device).train()

    layers = {
        "dense": SwiGLU(D, (K + S) * H).to(device),
        "loop": moe(args.experts, "loop"),
        "sorted": moe(args.experts, "sorted"),
        "grouped_mm": moe(args.experts, "grouped_mm"),
    }
    for name in ("sorted", "grouped_mm"):  # identical weights, so only the dispatch differs
        layers[name].load_state_dict(layers["loop"].state_dict())
    probe = torch.zeros(1, D, device=device)
    has_gmm = grouped_mm_available(probe, layers["loop"].cfg)
    default = resolve_dispatch(moe(args.experts).cfg, probe)
    print(f"D={D}, H={H}, E={args.experts}, top-{K}, {S} shared; dense width {(K + S) * H}; "
          f"{args.threads} thread(s); default dispatch on {device.type}: {default}"
          + ("" if has_gmm else "; torch._grouped_mm unusable here, so 'grouped_mm' runs as 'sorted'"))

    ratios = {"moe_over_dense": {}, "loop_over_dense": {}, "sorted_over_dense": {}, "grouped_mm_over_dense": {}}
    seconds = {}
    sizes = args.tokens
    for N in sizes:
        x = torch.randn(N, D, device=device)
        for layer in layers.values():
            fwd_bwd_seconds(layer, x, 2)  # warm-up
        times = {name: [] for name in layers}
        for _ in tqdm(range(args.repeats), desc=f"N={N}", leave=False, disable=not show_progress(None)):
            for name, layer in layers.items():
                times[name].append(fwd_bwd_seconds(layer, x, args.iters))
        med = {name: statistics.median(t) for name, t in times.items()}
        seconds[str(N)] = med
        for name in ("loop", "sorted", "grouped_mm"):
            ratios[f"{name}_over_dense"][str(N)] = med[name] / med["dense"]
        ratios["moe_over_dense"][str(N)] = ratios[f"{default}_over_dense"][str(N)]  # the default dispatch
        print(f"N={N:>5}: dense {med['dense'] * 1e3:7.2f} ms | " + " | ".join(
            f"{name} {med[name] * 1e3:7.2f} ms ({med[name] / med['dense']:.2f}x)" for name in ("loop", "sorted", "grouped_mm")))

    N = max(sizes)
    x = torch.randn(N, D, device=device)
    scaling_layers = {E: moe(E) for E in args.scaling_experts}
    for layer in scaling_layers.values():
        fwd_bwd_seconds(layer, x, 2)
    times = {E: [] for E in scaling_layers}
    for _ in tqdm(range(args.repeats), desc="experts scaling", leave=False, disable=not show_progress(None)):
        for E, layer in scaling_layers.items():
            times[E].append(fwd_bwd_seconds(layer, x, args.iters))
    scaling = {str(E): statistics.median(t) for E, t in times.items()}
    base = scaling[str(min(scaling_layers))]
    scaling_ratio = scaling[str(max(scaling_layers))] / base
    print(f"N={N}, top-{K}: time by number of experts (params grow, work per token does not):")
    for E, t in scaling.items():
        print(f"  E={E:>3}: {t * 1e3:7.2f} ms  ({t / base:.2f}x E={min(scaling_layers)})")

    write_metrics(args.out, {
        **ratios,
        "experts_scaling": scaling,
        "experts_scaling_ratio": scaling_ratio,
        "default_dispatch": default,
        "seconds": seconds,
        "config": {"dim": D, "expert_dim": H, "n_experts": args.experts, "top_k": K, "shared": S,
                   "threads": args.threads},
    })
    return ratios


if __name__ == "__main__":
    main()
