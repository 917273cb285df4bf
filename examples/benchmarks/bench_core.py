"""Core speed: the KV cache, toyds's training speed against a plain transformer, and packing.

    python examples/benchmarks/bench_core.py --out runs/bench_core

1. Sampling 64 new tokens for 64 prompts, KV cache vs recomputing every step (same tokens).
2. Training tokens/s of toyds's GPT vs a reference transformer of the same shape written
   the obvious way (explicit q @ k^T, mask, softmax, separate q/k/v), same AdamW step.
3. Real (non-pad) training tokens/s on the mixed base corpus through train_supervised,
   packed (the default) vs padded; and MFU = 6 * params * real tokens/s / R, R this
   machine's float32 matmul rate at the model's width, for the default recipe's
   optimiser (muon_attention) and for AdamW alone.
4. Steps to 0.95: chapter 0's traced tiny model (1-4 digit sums, 1,000 steps, lr 1e-2),
   greedy on 100 held-out 3-digit sums every 50 steps, for the default recipe
   (muon_attention) and the previous one (AdamW); None if never within the budget.
5. With --base-seeds N: the same for the pipeline's MoE base made to open with <think>,
   every 100 of 800 steps, on its corpus (6,000 problems, levels weighted 1:2:3) and the
   previous one (20,000, levels in turn).

Each timing is the median of --repeats runs after a warm-up, the two compared alternating
within each repeat. About 1 minute on 2 cores plus 1.5 minutes per --converge-seeds seed.
--out DIR writes DIR/metrics.json: "kv_cache_speedup", "train_tokens_per_s", "train_ratio",
"real_tokens_per_s", "packing_speedup", "mfu", "mfu_adamw", "matmul_gflops", "steps_to_095"
({"muon_attention": [step or None per seed], "adamw": [...]}), "base_steps_to_095"
({"harder_6000": [...], "even_20000": [...]}).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from toyds.core.model import GPT, make_config
from toyds.core.rope import rope_tables
from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.flags import HelpFormatter, add_common_args
from toyds.experiment.output import setup, write_metrics
from toyds.tasks.arithmetic import Arithmetic, sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.tasks.base import level_weights
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import make_optimizer


class ReferenceBlock(nn.Module):
    """Attention and SwiGLU spelled out, no fused kernels."""

    def __init__(self, dim, n_head, hidden):
        super().__init__()
        self.n_head = n_head
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.g1, self.g2 = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))

    @staticmethod
    def rms(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * g

    @staticmethod
    def rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        h = self.rms(x, self.g1)
        q = self.q(h).view(B, T, self.n_head, -1).transpose(1, 2)
        k = self.k(h).view(B, T, self.n_head, -1).transpose(1, 2)
        v = self.v(h).view(B, T, self.n_head, -1).transpose(1, 2)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        att = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, D))
        h = self.rms(x, self.g2)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class ReferenceGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(ReferenceBlock(cfg.dim, cfg.n_head, cfg.hidden_dim) for _ in range(cfg.n_layer))
        self.g = nn.Parameter(torch.ones(cfg.dim))
        self.cos, self.sin = rope_tables(cfg.dim // cfg.n_head, cfg.block_size, cfg.rope_base)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        return ReferenceBlock.rms(x, self.g) @ self.embed.weight.T


def time_train_steps(model, batch, steps):
    opt = make_optimizer(model, 1e-3, 0.1)
    x, y = batch
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def real_tokens_per_s(model_cfg, pairs, pack: bool, steps: int, seed: int,
                      optimizer: str = "muon_attention") -> tuple[float, float]:
    """(real tokens/s, share of the computed positions that were real) over `steps` training steps."""
    torch.manual_seed(seed)
    model = GPT(model_cfg)
    hist = train_supervised(model, pairs, TrainConfig(steps=steps, batch_size=64, warmup=0, lr=1e-3, min_lr=1e-3,
                                                      pack=pack, seed=seed, optimizer=optimizer), progress=False)
    tokens, slots = sum(r["tokens"] for r in hist), sum(r["slots"] for r in hist)
    return tokens / hist[-1]["seconds"], tokens / slots


def steps_to_095(optimizer: str, seed: int, steps: int = 1000, every: int = 50) -> int | None:
    """The first step at which chapter 0's traced model gets >= 0.95 of 100 held-out 3-digit sums."""
    task = Arithmetic((1, 2, 3, 4))
    pairs = task.corpus(task.sample(20000, "train", seed=seed), "think", seed=seed)
    test = sample_problems(100, digits=(3,), split="test", unique=True)
    torch.manual_seed(seed)
    model = GPT(make_config("tiny"))
    hist = train_supervised(model, pairs, TrainConfig.recipe(steps, 1e-2, 64, seed, optimizer=optimizer,
                                                             eval_every=every),
                            eval_fn=lambda m: {"acc3": evaluate(m, task, test)["accuracy"]}, progress=False)
    return next((r["step"] for r in hist if r.get("eval_acc3", 0) >= 0.95), None)  # rows count steps from 1


BASE_CORPORA = {"harder_6000": (6000, "harder"), "even_20000": (20000, "even")}  # the default, and the previous one


def base_steps_to_095(corpus: str, seed: int, steps: int = 800, every: int = 100) -> int | None:
    """The first step at which the pipeline's MoE base, made to open with <think>, gets >= 0.95 of 140
    held-out 3-digit sums; corpus names the base corpus (BASE_CORPORA: problems, level weighting)."""
    n, weighting = BASE_CORPORA[corpus]
    task = Arithmetic((1, 2, 3))
    pairs = task.corpus(task.sample_weighted(n, "train", seed, level_weights(weighting, task)), "base", seed=seed)
    test = [p for p in task.sample(300, "test", unique=True) if p.digits == 3]  # the pipeline's held-out sums
    torch.manual_seed(seed)
    model = GPT(make_config("small", ffn="moe", moe=dict(n_experts=8, top_k=2, n_shared_experts=1, balance="bias")))
    hist = train_supervised(model, pairs, TrainConfig.recipe(steps, 3e-3, 64, seed, eval_every=every),
                            eval_fn=lambda m: {"acc3": evaluate(m, task, test, prefix="<think>")["accuracy"]},
                            progress=False)
    return next((r["step"] for r in hist if r.get("eval_acc3", 0) >= 0.95), None)


def matmul_gflops(dim: int, rows: int = 4096, repeats: int = 20) -> float:
    """This machine's float32 matmul rate at width `dim`: (rows, D) @ (D, 3D), 2 * rows * D * 3D flops each."""
    a, b = torch.randn(rows, dim), torch.randn(dim, 3 * dim)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * rows * dim * 3 * dim / statistics.median(times) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--preset", default="small", help="model size preset")
    ap.add_argument("--batch", type=int, default=64, help="prompts (sampling) and sequences (training) per batch")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens to sample per prompt")
    ap.add_argument("--seq-len", type=int, default=64, help="training sequence length")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    ap.add_argument("--pack-steps", type=int, default=20, help="training steps per timed repeat of packed vs padded")
    ap.add_argument("--converge-seeds", type=int, default=1, help="seeds of the steps-to-0.95 measurement (0 skips it)")
    ap.add_argument("--converge-steps", type=int, default=1000, help="the budget of each steps-to-0.95 run")
    ap.add_argument("--base-seeds", type=int, default=0,
                    help="seeds of the pipeline base's steps-to-0.95 (forced <think>, 3-digit sums) for the default "
                         "corpus and the previous one; about 2 x 3 minutes per seed on 2 cores (0 skips it)")
    ap.add_argument("--base-steps", type=int, default=800, help="the budget of each base run")
    add_common_args(ap, seeds=None)
    args = ap.parse_args(argv)
    device = setup(args)
    cfg = make_config(args.preset)

    # 1. KV cache vs full recompute, same greedy tokens
    model = GPT(cfg).to(device).eval()
    eos = torch.tensor([Tokenizer().eos_id], device=device)
    # an untrained model may stop at once; forbid <eos> so every row makes all its tokens
    model.register_forward_hook(lambda mod, inputs, out: out.index_fill(-1, eos, float("-inf")))
    prompts = [torch.randint(3, cfg.vocab_size, (12,)).tolist() for _ in range(args.batch)]
    run = lambda cache: generate(model, prompts, args.new_tokens, temperature=0, use_cache=cache)
    run(True), run(False)  # warm-up
    cached, full = [], []
    for _ in range(args.repeats):
        for use_cache, times in ((True, cached), (False, full)):
            t0 = time.perf_counter()
            g = run(use_cache)
            times.append(time.perf_counter() - t0)
    n_new = g.completions.shape[1]
    speedup = statistics.median(full) / statistics.median(cached)
    print(f"sampling {args.batch} x {n_new} new tokens: cache {statistics.median(cached):.3f}s, "
          f"recompute {statistics.median(full):.3f}s -> KV cache speedup {speedup:.1f}x")

    # 2. training throughput, toyds vs the obvious reference, same shape and data
    torch.manual_seed(args.seed)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1), device=device)
    batch = (x[:, :-1], x[:, 1:])
    ours, ref = GPT(cfg).to(device).train(), ReferenceGPT(cfg).to(device).train()
    assert ours.params_total() == sum(p.numel() for p in ref.parameters()), "shapes differ"
    time_train_steps(ours, batch, 2), time_train_steps(ref, batch, 2)  # warm-up
    t_ours, t_ref = [], []
    for _ in range(args.repeats):
        t_ours.append(time_train_steps(ours, batch, args.train_steps))
        t_ref.append(time_train_steps(ref, batch, args.train_steps))
    tokens = args.batch * args.seq_len * args.train_steps
    tps = {"toyds": tokens / statistics.median(t_ours), "reference": tokens / statistics.median(t_ref)}
    print(f"training tokens/s: toyds {tps['toyds']:,.0f}, reference {tps['reference']:,.0f} "
          f"-> ratio {tps['toyds'] / tps['reference']:.2f}")

    # 3. packing: the same batches, through train_supervised, packed vs padded
    pairs = build_corpus(sample_problems(20000, digits=(1, 2, 3), seed=args.seed), "base", seed=args.seed)
    real_tokens_per_s(cfg, pairs, True, 2, args.seed)  # warm-up
    packed, padded, share = [], [], {}
    for _ in range(args.repeats):
        tps_p, share["packed"] = real_tokens_per_s(cfg, pairs, True, args.pack_steps, args.seed)
        tps_u, share["padded"] = real_tokens_per_s(cfg, pairs, False, args.pack_steps, args.seed)
        packed.append(tps_p)
        padded.append(tps_u)
    real = {"packed": statistics.median(packed), "padded": statistics.median(padded)}
    adamw = statistics.median(real_tokens_per_s(cfg, pairs, True, args.pack_steps, args.seed, "adamw")[0]
                              for _ in range(args.repeats))
    gflops = matmul_gflops(cfg.dim)
    params = GPT(cfg).params_total()
    # MFU = 6 * params * tokens/s / peak rate  (2 flops per weight per token forward, 4 backward)
    mfu, mfu_adamw = (6 * params * t / (gflops * 1e9) for t in (real["packed"], adamw))
    print(f"real training tokens/s on the base corpus: packed {real['packed']:,.0f} ({share['packed']:.0%} of positions "
          f"real), padded {real['padded']:,.0f} ({share['padded']:.0%} real) -> packing {real['packed'] / real['padded']:.2f}x")
    print(f"float32 matmul at width {cfg.dim}: {gflops:.1f} GFLOP/s; model-FLOPs utilisation of the packed run "
          f"{mfu:.1%} (6 x {params:,} params x tokens/s; with AdamW alone {mfu_adamw:.1%})")

    # 4. steps to 0.95 on 3-digit traces: the default recipe against the previous one
    converge = {o: [steps_to_095(o, s, args.converge_steps) for s in range(args.seed, args.seed + args.converge_seeds)]
                for o in ("muon_attention", "adamw")}
    for o, got in converge.items():
        if got:
            print(f"steps to 0.95 on 3-digit traces, {o}: {got} (None: not within {args.converge_steps:,} steps)")

    # 5. the same for the pipeline's MoE base, forced to think: its corpus now against the previous one
    base = {c: [base_steps_to_095(c, s, args.base_steps) for s in range(args.seed, args.seed + args.base_seeds)]
            for c in BASE_CORPORA}
    for c, got in base.items():
        if got:
            print(f"steps to 0.95 of the pipeline's base forced to think, 3-digit sums, corpus {c}: {got} "
                  f"(None: not within {args.base_steps:,} steps)")

    write_metrics(args.out, {
        "real_tokens_per_s": real,
        "packing_speedup": real["packed"] / real["padded"],
        "real_share": share,
        "mfu": mfu,
        "mfu_adamw": mfu_adamw,
        "steps_to_095": converge,
        "base_steps_to_095": base,
        "matmul_gflops": gflops,
        "kv_cache_speedup": speedup,
        "train_tokens_per_s": tps,
        "train_ratio": tps["toyds"] / tps["reference"],
        "sampling_seconds": {"cache": statistics.median(cached), "recompute": statistics.median(full)},
        "threads": args.threads,
        "preset": args.preset,
    })


if __name__ == "__main__":
    main()
