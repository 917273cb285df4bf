"""GRPO on a saved Countdown base (scratch harness). Writes OUT.json (measures, history, completions) and OUT.pt (policy)."""
import argparse, copy, json, os, time, torch, sys
sys.path.insert(0, "examples")
from toyds import countdown as cd
from toyds.model import GPT, GPTConfig
from toyds.grpo import GRPOConfig, train_grpo
from toyds.evaluate import complete
import importlib.util
spec = importlib.util.spec_from_file_location("aha", "examples/07_aha.py"); aha = importlib.util.module_from_spec(spec); spec.loader.exec_module(aha)
ap = argparse.ArgumentParser()
ap.add_argument("base"); ap.add_argument("--steps", type=int, default=60); ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--prompts", type=int, default=16); ap.add_argument("--group", type=int, default=8)
ap.add_argument("--beta", type=float, default=0.02); ap.add_argument("--loss", default="grpo"); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--max-new", type=int, default=170); ap.add_argument("--eval", type=int, default=120)
ap.add_argument("--samples", type=int, default=2); ap.add_argument("--out", default=None)
a = ap.parse_args()
torch.set_num_threads(1)
print("load", os.getloadavg(), flush=True)
ck = torch.load(a.base); m = GPT(GPTConfig(**ck["cfg"])); m.load_state_dict(ck["model"])
test = cd.sample_problems(a.eval, split="test", unique=True)
rl = cd.sample_problems(2000, split="rl", seed=a.seed)
keys = ("accuracy", "verify_rate", "backtrack_rate", "mean_tries", "mean_length", "verify_precision", "verify_recall",
        "first_try_accuracy", "backtrack_if_first_wrong", "backtrack_if_first_right")
def rnd(r): return {k: round(r[k], 3) if isinstance(r[k], float) else r[k] for k in keys}
def meas(model):
    g = complete(model, test, 0.0, max_new_tokens=a.max_new); r = cd.measure(test, g)
    s = complete(model, test, 1.0, samples=a.samples, max_new_tokens=a.max_new, seed=a.seed)
    rs = cd.measure([p for p in test for _ in range(a.samples)], s)
    return r, rs, g
t0 = time.perf_counter()
b, bs, gb = meas(m)
print("before greedy ", rnd(b)); print("before sampled", rnd(bs))
for lv, v in b["by_difficulty"].items(): print("   ", lv, rnd(v))
print(f"measure {time.perf_counter()-t0:.0f}s", flush=True)
p = copy.deepcopy(m); t0 = time.perf_counter()
cfg = GRPOConfig(steps=a.steps, prompts_per_step=a.prompts, group_size=a.group, lr=a.lr, beta=a.beta, max_new_tokens=a.max_new, loss_type=a.loss, seed=a.seed)
h = train_grpo(p, rl, cfg, reward_fns=aha.COUNTDOWN_REWARDS, reward_weights=aha.COUNTDOWN_WEIGHTS, measure_fn=cd.measure, progress=False)
t_rl = time.perf_counter()-t0
print(f"rl {t_rl:.0f}s load {os.getloadavg()}")
for r in h[:: max(1, len(h)//10)] + [h[-1]]:
    print("  ", r["step"], {k: round(r[k], 3) for k in ("reward", "accuracy", "verify_rate", "backtrack_rate", "mean_length", "kl") if k in r})
af, as_, ga = meas(p)
print("after greedy ", rnd(af)); print("after sampled", rnd(as_))
for lv, v in af["by_difficulty"].items(): print("   ", lv, rnd(v))
for t, pp in list(zip(ga, test))[:8]: print("   ", pp.prompt() + t)
caught = [(pp, t) for t, pp in zip(ga, test) if " no" in t and cd.accuracy(t, pp.numbers, pp.target)]
print("caught mistakes after RL:", len(caught))
for pp, t in caught[:3]: print("   ", pp.prompt() + t)
if a.out:
    torch.save({"model": p.state_dict(), "cfg": ck["cfg"]}, a.out + ".pt")
    hist = [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in h]
    json.dump({"args": vars(a), "rl_seconds": t_rl, "before": b, "before_sampled": bs, "after": af, "after_sampled": as_,
               "history": hist, "completions": [{"prompt": pp.prompt(), "difficulty": pp.difficulty, "before": x, "after": y}
                                                for pp, x, y in zip(test, gb, ga)]}, open(a.out + ".json", "w"), indent=1)
