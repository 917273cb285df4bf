"""Lab script of docs/lab/26 (round 2): train a base and record greedy and forced-<think> accuracy on the
pipeline's 300 held-out problems every --every steps.

    python docs/lab/scripts/base_curve.py SEED OUT.jsonl [--threads N] [--steps S] [--lr LR] [--opt adamw]
        [--preset small] [--dense] [--problems 20000] [--weights 1,2,3] [--corpus-style base|think]
        [--save PATH] [--tag NAME]

The pipeline's MoE base by default (--dense: a dense model of --preset). --weights reweights the levels of
--problems training problems (this script's own draw: twice as many drawn, the first of each level kept,
shuffled; the library's Task.sample_weighted cycles instead). Appends one JSON line to OUT.jsonl.
"""
import argparse, json, time, random
import torch
from toyds.core.model import GPT, make_config
from toyds.tasks.registry import make_task
from toyds.tasks.arithmetic_traces import CorpusMix, build_corpus
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.evaluate.accuracy import evaluate

ap = argparse.ArgumentParser()
ap.add_argument("seed", type=int); ap.add_argument("out")
ap.add_argument("--threads", type=int, default=1); ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--lr", type=float, default=3e-3); ap.add_argument("--opt", default="adamw")
ap.add_argument("--preset", default="small"); ap.add_argument("--dense", action="store_true")
ap.add_argument("--mix", default="0.45,0.30,0.25"); ap.add_argument("--weights", default="1,1,1")
ap.add_argument("--every", type=int, default=100); ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--schedule", default="cosine"); ap.add_argument("--minlr", type=float, default=0.1)
ap.add_argument("--warmup", type=int, default=50); ap.add_argument("--tag", default="")
ap.add_argument("--corpus-style", default="base")
ap.add_argument("--save", default=None)
ap.add_argument("--problems", type=int, default=20000)
a = ap.parse_args()
torch.set_num_threads(a.threads)
task = make_task("arithmetic")
test = task.sample(300, "test", unique=True)
w = [float(x) for x in a.weights.split(",")]
rng = random.Random(f"w{a.seed}")
# problems: the task's 20,000, or reweighted by level (more of the hard ones)
base_probs = task.sample(a.problems, "train", seed=a.seed)
if w != [1, 1, 1]:
    by = {d: [p for p in task.sample(2 * a.problems, "train", seed=a.seed) if p.digits == d] for d in (1, 2, 3)}
    n = [round(a.problems * x / sum(w)) for x in w]
    probs = [p for d, k in zip((1, 2, 3), n) for p in by[d][:k]]
    rng.shuffle(probs)
else:
    probs = base_probs
if a.corpus_style == "base":
    d, t, u = (float(x) for x in a.mix.split(","))
    corpus = build_corpus(probs, CorpusMix(d, t, u), seed=a.seed)
else:
    corpus = build_corpus(probs, a.corpus_style, seed=a.seed)
torch.manual_seed(a.seed)
if a.dense:
    model = GPT(make_config(a.preset))
else:
    model = GPT(make_config(a.preset, ffn="moe", moe=dict(n_experts=8, top_k=2, n_shared_experts=1, balance="bias")))
rows = []
def ev(m):
    g = evaluate(m, task, test)
    f = evaluate(m, task, test, prefix="<think>")
    r = {"greedy": round(g["accuracy"], 3), "g_by": {k: round(v["accuracy"], 3) for k, v in g["by_difficulty"].items()},
         "think_rate": round(g["think_rate"], 3),
         "forced": round(f["accuracy"], 3), "f_by": {k: round(v["accuracy"], 3) for k, v in f["by_difficulty"].items()}}
    return r
cfg = TrainConfig(steps=a.steps, batch_size=a.batch, lr=a.lr, min_lr=a.lr * a.minlr, warmup=min(a.warmup, a.steps // 10),
                  seed=a.seed, optimizer=a.opt, schedule=a.schedule, eval_every=a.every)
t0 = time.perf_counter()
hist = train_supervised(model, corpus, cfg, eval_fn=ev, progress=False)
secs = time.perf_counter() - t0
curve = [{"step": h["step"], **{k[5:]: v for k, v in h.items() if k.startswith("eval_")}} for h in hist if "eval_greedy" in h]
train_secs = hist[-1]["seconds"]
row = {"tag": a.tag, "seed": a.seed, "threads": a.threads, "args": vars(a), "final": curve[-1], "curve": curve,
       "seconds": secs, "train_seconds": train_secs}
print(json.dumps({"tag": a.tag, "seed": a.seed, "threads": a.threads, "final": curve[-1], "seconds": round(secs)}))
if a.save:
    from toyds.train.checkpoint import save_checkpoint
    save_checkpoint(a.save, model, meta={"stage": "base"})
with open(a.out, "a") as f:
    f.write(json.dumps(row) + "\n")
