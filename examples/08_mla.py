"""Chapter 8, cheaper to run: Multi-head Latent Attention's small cache, and multi-token prediction.

    python examples/08_mla.py --out runs/08              # 1 seed
    python examples/08_mla.py --seeds 3 --out runs/08    # the README's table

1. Quality: an MHA and an MLA model of about the same size (2 blocks of width 64, 4
   heads of d_h = 16; MLA with d_c = 32 and d_h^R = 16), trained alike on the mixed
   arithmetic corpus: held-out loss, greedy accuracy, accuracy with <think> forced.
2. KV-cache bytes per token per layer, measured from the cache tensors, beside V2
   Table 1's formulas (2 n_h d_h for MHA, d_c + d_h^R for absorbed MLA).
3. Decode tokens/s and memory at batch 64 for contexts 128 .. 2048 (random weights,
   caches filled with noise, variants taking turns, medians): the cache tensors'
   bytes and the peak rise of resident memory (Linux's VmHWM).
4. Multi-token prediction (V3 section 2.2): the MLA model with --mtp-depth modules
   trained in the same step; its main loss beside plain MLA's; greedy decoding of
   held-out prompts plain vs self-speculative (MTP drafts, one main forward checks),
   and again with --deep-extra pass-through blocks appended (zero output projections:
   the same tokens, the cost of a deeper main model), where drafting pays.

Why absorbed MLA decodes no faster here: per cached token it does 2.5x MHA's attention
arithmetic at these widths (toyds/efficient/mla.py), and a CPU decode step at this size
is bound by arithmetic and per-operation overhead, not by reading the cache.
Claims and every seed's figures: README chapter 8; one thread by default (a second
thread made timings on a shared machine 10-50x slower); docs/lab/08_mla.md.

With --out DIR: DIR/metrics.json with "quality", "cache_bytes_per_token",
"cache_bytes_formula", "decode", "decode_memory", "mtp" ({"acceptance", "speedup",
"deep", ...}), "seconds", "seeds", "summary", "claims".
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from toyds.core.model import GPT, make_config
from toyds.core.sampling import generate
from toyds.core.tokenizer import THINK, Tokenizer
from toyds.efficient.mla import cache_bytes_per_token
from toyds.efficient.speculative import speculative_generate
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.flags import HelpFormatter, add_common_args, arg_type, at_least, number, whole_numbers
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, run_seeds
from toyds.tasks.arithmetic import Arithmetic
from toyds.tasks.registry import add_arithmetic_args
from toyds.train.batches import encode_pairs
from toyds.train.supervised import TrainConfig, eval_loss, train_supervised

VARIANTS = ("mha", "mla_naive", "mla_absorb")  # what the cache and decode tables compare


def config(variant: str, args, **overrides):
    """The model of `variant` ("mha", "mla_naive" or "mla_absorb") at the example's shape."""
    shape = dict(n_layer=args.layers, n_head=args.heads, dim=args.dim, hidden_dim=3 * args.dim, **overrides)
    if variant == "mha":
        return make_config("tiny", attn="mha", **shape)
    impl = variant.split("_", 1)[1]
    # V2's proportions for heads of d_h (d_nope = d_v = d_h), but the latent d_c = --kv-lora-rank
    # (V2: 4 d_h; 2 d_h keeps MLA's parameters near MHA's) and d_rope = --qk-rope-head-dim (V2: d_h / 2)
    mla = dict(kv_lora_rank=args.kv_lora_rank, qk_rope_head_dim=args.qk_rope_head_dim, attn_impl=impl)
    return make_config("tiny", attn="mla", attn_config=mla, **shape)


# ------------------------------------------------------------ 1. and 4.: trained, per seed


def data(args, seed: int):
    tok, task = Tokenizer(), Arithmetic(args.digits, args.ops)
    train = task.corpus(task.sample(args.problems, "train", seed=seed), "base", seed=seed)
    test = task.sample(args.eval_per_digit * len(args.digits) * len(args.ops), "test", unique=True)  # all 1-digit sums
    val = encode_pairs(task.corpus(test, "base", seed=seed + 1), tok)  # the held-out problems, mixed styles
    return task, train, test, val


def train_one(variant: str, args, seed: int, train, mtp_depth: int = 0, desc: str = ""):
    torch.manual_seed(seed)  # every model of a seed starts from the same main weights (MTP modules come after)
    model = GPT(config(variant, args, mtp_depth=mtp_depth)).to(args.device)
    t0 = time.perf_counter()
    recipe = TrainConfig.recipe(args.steps, args.lr, args.batch_size, seed)
    history = train_supervised(model, train, recipe, desc=desc, progress=None if len(args.seeds) == 1 else False)
    seconds = time.perf_counter() - t0
    print(f"  {desc}: {model.params_total():,} parameters, trained in {seconds:.0f}s", flush=True)
    return model, history, seconds


def quality(model, task, test, val, seconds: float) -> dict:
    return {"val_loss": eval_loss(model, val, Tokenizer().pad_id),
            "accuracy": evaluate(model, task, test)["accuracy"],
            "think_accuracy": evaluate(model, task, test, prefix=THINK)["accuracy"],
            "params": model.params_total(), "train_seconds": seconds}


def with_pass_through_blocks(model, extra: int):
    """The same model with `extra` blocks appended whose output projections (attention's
    wo, the feed-forward's w2) are zero: x + 0 + 0 = x, so every logit is unchanged, while
    each main forward does the arithmetic of n_layer + extra blocks."""
    cfg = dataclasses.replace(model.cfg, n_layer=model.cfg.n_layer + extra)
    deep = GPT(cfg).to(next(model.parameters()).device)
    missing, unexpected = deep.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("blocks.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        for block in deep.blocks[model.cfg.n_layer :]:
            block.attn.wo.weight.zero_()
            block.ffn.w2.weight.zero_()
    return deep.eval()


def time_decoding(model, prompts: list[list[int]], repeats: int) -> dict:
    """Plain greedy (KV cache) vs self-speculative greedy, batch 1, alternating, medians."""
    block = model.cfg.block_size
    plain_t, spec_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plain = [generate(model, [p], block - len(p), temperature=0) for p in prompts]
        plain_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        spec = [speculative_generate(model, [p], block - len(p)) for p in prompts]
        spec_t.append(time.perf_counter() - t0)
    tokens = sum(int(g.completion_mask.sum()) for g in plain)
    K = model.cfg.mtp_depth
    proposed = [sum(s.proposed[k] for _, s in spec) for k in range(K)]
    accepted = [sum(s.accepted[k] for _, s in spec) for k in range(K)]
    return {
        "identical": float(all(torch.equal(a.sequences, b.sequences) for a, (b, _) in zip(plain, spec))),
        "acceptance": [a / p if p else float("nan") for a, p in zip(accepted, proposed)],
        "acceptance_depth1": accepted[0] / proposed[0] if proposed[0] else float("nan"),
        "tokens": tokens,
        # forwards of the main model: plain greedy runs one per token; speculative, the prefill and one per round
        "main_forwards": {"plain": sum(g.completions.shape[1] for g in plain),
                          "speculative": sum(1 + s.rounds for _, s in spec)},
        "tokens_per_s": {"plain": tokens / statistics.median(plain_t), "speculative": tokens / statistics.median(spec_t)},
        "speedup": statistics.median(plain_t) / statistics.median(spec_t),
    }


def run_one(args, seed: int) -> dict:
    """One seed: MHA and MLA trained the same way, then MLA with MTP, and its decoding."""
    tok = Tokenizer()
    task, train, test, val = data(args, seed)
    out = {"quality": {}}
    for variant, name in (("mha", "mha"), ("mla_absorb", "mla")):
        model, _, seconds = train_one(variant, args, seed, train, desc=f"seed {seed}: {name}")
        out["quality"][name] = quality(model, task, test, val, seconds)
    q = out["quality"]
    q["loss_gap"] = q["mla"]["val_loss"] - q["mha"]["val_loss"]
    q["accuracy_gap"] = q["mla"]["accuracy"] - q["mha"]["accuracy"]
    q["think_accuracy_gap"] = q["mla"]["think_accuracy"] - q["mha"]["think_accuracy"]

    # 4. the same MLA model with MTP modules, trained in the same step
    model, history, seconds = train_one("mla_absorb", args, seed, train, mtp_depth=args.mtp_depth,
                                        desc=f"seed {seed}: mla + mtp")
    model.eval()
    loss_main = eval_loss(model, val, tok.pad_id)  # the main head only: model(x) ignores the MTP modules
    # worked traces: <think> forced after each prompt, so the completions are the traces MTP should find predictable
    prompts = [tok.encode(p.prompt() + THINK) for p in test[: args.mtp_prompts]]
    t0 = time.perf_counter()
    shallow = time_decoding(model, prompts, args.mtp_repeats)
    deep = time_decoding(with_pass_through_blocks(model, args.deep_extra), prompts, args.mtp_repeats)
    print(f"  seed {seed}: MTP decoding timed in {time.perf_counter() - t0:.0f}s", flush=True)
    out["mtp"] = {**shallow, "loss_main_with_vs_without_mtp": [loss_main, q["mla"]["val_loss"]],
                  "loss_main_change": loss_main - q["mla"]["val_loss"],
                  "train_loss_mtp_last": history[-1]["loss_mtp"], "train_seconds": seconds,
                  "accuracy_with_mtp": evaluate(model, task, test)["accuracy"],
                  "deep": {**deep, "n_layer": model.cfg.n_layer + args.deep_extra}}
    return out


# ------------------------------------------------------------ 2.: cache bytes, from the tensors


def cache_table(args) -> tuple[dict, dict]:
    measured, formula = {}, {}
    for v in VARIANTS:
        cfg = config(v, args)
        with torch.device("meta"):  # the cache's shapes are all we need here
            model = GPT(cfg)
        cache = model.new_caches(2, 8)[0]
        measured[v] = cache_bytes_per_token(cache, 2, 8)
        nh, dh, mla = cfg.n_head, cfg.dim // cfg.n_head, cfg.attn_config
        b = torch.finfo(torch.float32).bits // 8
        if v == "mha":
            formula[v] = 2 * nh * dh * b  # V2 Table 1: 2 n_h d_h l (one layer, float32)
        elif v == "mla_naive":
            formula[v] = nh * (mla.qk_nope_head_dim + mla.qk_rope_head_dim + mla.v_head_dim) * b  # per-head k and v
        else:
            formula[v] = (mla.kv_lora_rank + mla.qk_rope_head_dim) * b  # V2 Table 1: (d_c + d_h^R) l
    return measured, formula


# ------------------------------------------------------------ 3.: decode speed and memory


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Return freed heap to the OS, reset the peak resident size (Linux), and return the resident size in KiB."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current VmRSS
    except OSError:
        return None
    return _status_kib("VmRSS")


@torch.no_grad()
def decode_memory(model, context: int, batch: int, steps: int) -> dict:
    """The cache's bytes (all layers) and the peak rise of resident memory while it is allocated,
    filled and `steps` one-token decode steps run after `context` cached positions."""
    base = reset_peak_rss()
    caches = model.new_caches(batch, context + steps)
    for c in caches:  # noise: what the cache holds does not change the cost
        for t in vars(c).values():
            t.normal_()
    x = torch.randint(3, model.cfg.vocab_size, (batch, 1))
    for i in range(steps):
        model(x, caches=caches, start=context + i)
    peak = _status_kib("VmHWM")
    cache_mb = sum(t.numel() * t.element_size() for c in caches for t in vars(c).values()) / 2**20
    return {"cache_mb": cache_mb,
            "peak_rss_rise_mb": (peak - base) / 1024 if base is not None and peak is not None else None}


@torch.no_grad()
def decode_speeds(models: dict, context: int, batch: int, steps: int, repeats: int) -> dict:
    """Tokens/s of one-token decode steps after `context` cached positions, for each model.
    The models take turns within each repeat, so load from elsewhere hits them alike; medians."""
    caches, times = {}, {v: [] for v in models}
    x = torch.randint(3, next(iter(models.values())).cfg.vocab_size, (batch, 1))
    for v, model in models.items():
        caches[v] = model.new_caches(batch, context + steps)
        for c in caches[v]:
            for t in vars(c).values():
                t.normal_()
        model(x, caches=caches[v], start=context)  # warm-up
    for _ in range(repeats):
        for v, model in models.items():
            t0 = time.perf_counter()
            for i in range(steps):
                model(x, caches=caches[v], start=context + i)
            times[v].append(time.perf_counter() - t0)
    return {v: batch * steps / statistics.median(t) for v, t in times.items()}


def decode_table(args) -> tuple[dict, dict]:
    block = max(args.contexts) + args.decode_steps
    models = {}
    for v in VARIANTS:
        torch.manual_seed(0)
        models[v] = GPT(config(v, args, block_size=block)).eval()
    speed, memory = {}, {}
    for ctx in tqdm(args.contexts, desc="decode timings", disable=not sys.stderr.isatty(), leave=False):
        memory[str(ctx)] = {v: decode_memory(m, ctx, args.decode_batch, args.decode_steps) for v, m in models.items()}
        speed[str(ctx)] = decode_speeds(models, ctx, args.decode_batch, args.decode_steps, args.repeats)
    return speed, memory


# ------------------------------------------------------------ the run


CLAIMS = [
    # "Little or nothing": 0.05 nats, below the seed-to-seed spread of either model's held-out loss at
    # this budget (std 0.06-0.075 over 3 seeds: docs/lab/08_cheaper_to_run.md), so a gap inside it is smaller than a change of seed.
    Claim("MLA's held-out loss at most 0.05 above MHA's", "quality.loss_gap", "<=", 0.05),
    Claim("self-speculative decoding gives plain greedy's tokens", "mtp.identical", ">=", 1.0),
    Claim("depth-1 drafts accepted >= 85% of the time (V3: 85-90%)", "mtp.acceptance_depth1", ">=", 0.85),
    Claim("MTP does not raise the main model's held-out loss (V3: it helps)", "mtp.loss_main_change", "<=", 0.0),
    Claim("self-speculative decoding faster than greedy with the deeper main model", "mtp.deep.speedup", ">", 1.0),
]
HEADLINE = ["quality.mha.val_loss", "quality.mla.val_loss", "quality.loss_gap", "quality.mha.accuracy",
            "quality.mla.accuracy", "quality.mha.think_accuracy", "quality.mla.think_accuracy",
            "mtp.loss_main_change", "mtp.acceptance_depth1", "mtp.speedup", "mtp.deep.speedup"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--layers", type=at_least(1), default=2, help="transformer blocks of every trained model")
    ap.add_argument("--heads", type=at_least(1), default=4, help="attention heads n_h")
    ap.add_argument("--dim", type=at_least(1), default=64, help="model width D (head size d_h = D / n_h; SwiGLU width 3 D)")
    ap.add_argument("--kv-lora-rank", type=at_least(1), default=32, help="MLA's latent width d_c (V2: 4 d_h)")
    ap.add_argument("--qk-rope-head-dim", type=at_least(1), default=16, help="MLA's rotary width d_h^R (V2: d_h / 2)")
    ap.add_argument("--steps", type=at_least(1), default=600, help="training steps of each model")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=1e-2, help="peak learning rate (tiny models like it high)")
    ap.add_argument("--batch-size", type=at_least(1), default=64, help="sequences per step")
    ap.add_argument("--problems", type=at_least(1), default=20000, help="training problems drawn")
    ap.add_argument("--eval-per-digit", type=at_least(1), default=50, help="held-out problems per digit count")
    ap.add_argument("--mtp-depth", type=at_least(1), default=1, help="MTP modules K (V3 uses 1)")
    ap.add_argument("--mtp-prompts", type=at_least(1), default=16, help="held-out prompts decoded one at a time for MTP")
    ap.add_argument("--mtp-repeats", type=at_least(1), default=3, help="timings of the MTP decoding (median)")
    ap.add_argument("--deep-extra", type=at_least(0), default=4, help="pass-through blocks added to show a deeper main model")
    ap.add_argument("--contexts", type=arg_type(whole_numbers("--contexts", "128,512,2048")), default="128,256,512,1024,2048",
                    help="cached positions at which decode speed is measured")
    ap.add_argument("--decode-batch", type=at_least(1), default=64, help="sequences decoded together in the speed table")
    ap.add_argument("--decode-steps", type=at_least(1), default=8, help="one-token steps per timing")
    ap.add_argument("--repeats", type=at_least(1), default=5, help="timings per decode measurement (median)")
    add_arithmetic_args(ap)
    # one thread by default: these widths gain little from a second, and on a shared machine a torch thread
    # waiting for a descheduled partner made my decode timings 10-50x slower (seeds still run side by side)
    add_common_args(ap, threads=1)
    args = ap.parse_args(argv)
    setup(args)
    t_start = time.perf_counter()

    # 1. and 4., per seed
    metrics = run_seeds(run_one, args, HEADLINE, CLAIMS)
    q = metrics["quality"]
    print(f"\n1. quality, seed {metrics['seed_list'][0]} ({args.steps} steps each, mixed corpus)")
    print(f"{'':<6}{'params':>9}{'held-out loss':>15}{'greedy acc':>12}{'<think> acc':>13}")
    for name in ("mha", "mla"):
        r = q[name]
        print(f"{name:<6}{r['params']:>9,}{r['val_loss']:>15.4f}{r['accuracy']:>12.3f}{r['think_accuracy']:>13.3f}")

    # 2. cache bytes, measured and by formula
    measured, formula = cache_table(args)
    print("\n2. KV cache bytes per token per layer (float32), measured from the cache tensors")
    for v in VARIANTS:
        print(f"  {v:<11}{measured[v]:>6.0f}   formula {formula[v]:>5}")
    # V2 Table 1 at DeepSeek-V3's widths, for scale (computed, not measured)
    print(f"  at V3's widths (n_h = 128, d_h = 128, d_c = 512, d_h^R = 64): MHA {2 * 128 * 128} vs MLA {512 + 64} "
          f"numbers per token per layer, {2 * 128 * 128 / (512 + 64):.0f}x; here {measured['mha'] / measured['mla_absorb']:.1f}x")

    # 3. decode speed and memory
    speed, memory = decode_table(args)
    print(f"\n3. decode at batch {args.decode_batch}: tokens/s (cache MB of all layers / peak RSS rise MB)")
    print(f"{'context':>8}" + "".join(f"{v:>28}" for v in VARIANTS))
    for ctx in speed:
        cells = []
        for v in VARIANTS:
            m = memory[ctx][v]
            rise = f"{m['peak_rss_rise_mb']:.0f}" if m["peak_rss_rise_mb"] is not None else "n/a"
            cells.append(f"{speed[ctx][v]:>9.0f} ({m['cache_mb']:>5.1f} / {rise:>4})")
        print(f"{ctx:>8}" + "".join(f"{c:>28}" for c in cells))

    # 4. MTP
    m = metrics["mtp"]
    print(f"\n4. multi-token prediction, K = {args.mtp_depth}, seed {metrics['seed_list'][0]}")
    a, b = m["loss_main_with_vs_without_mtp"]
    print(f"  held-out main loss with MTP {a:.4f}, without {b:.4f} ({a - b:+.4f})")
    for label, r in (("trained model", m), ("+ pass-through blocks", m["deep"])):
        layers = args.layers if r is m else r["n_layer"]
        print(f"  {label} ({layers} blocks): acceptance by depth "
              + ", ".join(f"{x:.2f}" for x in r["acceptance"])
              + f"; main forwards {r['main_forwards']['plain']} -> {r['main_forwards']['speculative']}; "
              f"{r['tokens_per_s']['plain']:.0f} -> {r['tokens_per_s']['speculative']:.0f} tokens/s "
              f"(x{r['speedup']:.2f}); same tokens: {bool(r['identical'])}")

    seconds = time.perf_counter() - t_start
    print(f"\ntotal {seconds:.0f}s")
    metrics.update({"cache_bytes_per_token": measured, "cache_bytes_formula": formula, "decode": speed,
                    "decode_memory": memory, "decode_batch": args.decode_batch, "seconds": seconds})
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
