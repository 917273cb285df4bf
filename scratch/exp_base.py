"""Pretrain a Countdown base and measure it (scratch experiment harness)."""
import argparse, json, time, random, copy
import torch
from toyds import countdown as cd
from toyds.model import GPT, make_config
from toyds.train import TrainConfig, train_supervised
from toyds.evaluate import complete

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="small"); ap.add_argument("--layers", type=int, default=None)
ap.add_argument("--dim", type=int, default=None); ap.add_argument("--hidden", type=int, default=None)
ap.add_argument("--steps", type=int, default=600); ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--batch", type=int, default=64); ap.add_argument("--search", type=float, default=0.4)
ap.add_argument("--problems", type=int, default=20000); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--block", type=int, default=320); ap.add_argument("--eval", type=int, default=150)
ap.add_argument("--save", default=None); ap.add_argument("--ops2", default="default"); ap.add_argument("--drill", type=float, default=0.0); ap.add_argument("--buckets", type=int, default=8); ap.add_argument("--canonical", action="store_true"); ap.add_argument("--max-number", type=int, default=9); ap.add_argument("--phase1", type=int, default=0); ap.add_argument("--phase1-search", type=float, default=0.9)
a = ap.parse_args()
torch.set_num_threads(1)
if a.ops2 != "default": cd.OPS2 = tuple(a.ops2)
t0 = time.perf_counter()
torch.manual_seed(a.seed)
kw = {k: v for k, v in dict(n_layer=a.layers, dim=a.dim, hidden_dim=a.hidden).items() if v}
model = GPT(make_config(a.preset, block_size=a.block, **kw))
train = cd.sample_problems(a.problems, seed=a.seed, max_number=a.max_number)
corpus = cd.build_corpus(train, a.search, a.drill, seed=a.seed, shuffle=not a.canonical)
if a.phase1:
    c1 = cd.build_corpus(train, a.phase1_search, a.drill, seed=a.seed + 1, shuffle=not a.canonical)
    train_supervised(model, c1, TrainConfig.recipe(a.phase1, a.lr, a.batch, a.seed, progress=False, length_buckets=a.buckets))
    print(f"phase1 {time.perf_counter()-t0:.0f}s", flush=True)
train_supervised(model, corpus, TrainConfig.recipe(a.steps, a.lr, a.batch, a.seed, progress=False, length_buckets=a.buckets))
t1 = time.perf_counter()
if a.save: torch.save({'model': model.state_dict(), 'cfg': model.cfg.to_dict()}, a.save)
test = cd.sample_problems(a.eval, split="test", unique=True, max_number=a.max_number)
g = complete(model, test, 0.0, max_new_tokens=a.block - 20)
s = complete(model, test, 1.0, samples=4, max_new_tokens=a.block - 20, seed=1)
rep = [p for p in test for _ in range(4)]
mg, ms = cd.measure(test, g), cd.measure(rep, s)
ver = [(p, c) for p, c in zip(rep, s) if cd.behaviour(c, p).verifies]
nov = [(p, c) for p, c in zip(rep, s) if not cd.behaviour(c, p).verifies]
mv = cd.measure([p for p, _ in ver], [c for _, c in ver]) if ver else {}
mn = cd.measure([p for p, _ in nov], [c for _, c in nov]) if nov else {}
t2 = time.perf_counter()
keys = ("accuracy", "verify_rate", "backtrack_rate", "mean_tries", "mean_length", "verify_precision", "verify_recall", "first_try_accuracy")
f = lambda m: {k: (round(m[k], 3) if isinstance(m.get(k), float) else m.get(k)) for k in keys + ("n",)}
print(json.dumps(vars(a)))
print(f"params {model.params_total():,} pretrain {t1-t0:.0f}s eval {t2-t1:.0f}s")
print("greedy ", f(mg)); print("  by diff", {lv: (round(v["accuracy"],2), round(v["verify_rate"],2), round(v["mean_tries"],2)) for lv, v in mg["by_difficulty"].items()})
print("sampled", f(ms)); print("sampled verifying    ", f(mv)); print("sampled not verifying", f(mn))
for p, c in list(zip(test, g))[:3] + ver[:3]:
    print("  ", p.prompt() + c, cd.accuracy(c, p.numbers, p.target))
bad = [(p, c) for p, c in ver if any(t.verdict == "ok" and not t.correct for t in cd.parse_tries(c, p.numbers, p.target))]
print("false oks:"); [print("  ", p.prompt() + c) for p, c in bad[:4]]
bad = [(p, c) for p, c in ver if any(t.verdict == "no" and t.correct for t in cd.parse_tries(c, p.numbers, p.target))]
print("false nos:"); [print("  ", p.prompt() + c) for p, c in bad[:3]]
if a.save: torch.save({"model": model.state_dict(), "cfg": model.cfg.to_dict()}, a.save)
