"""Lab script of docs/lab/26 (round 2): GRPO from a saved base (base_curve.py --save) with the pipeline's
prompts, rewards and cap; greedy held-out accuracy by level every --every steps.

    python docs/lab/scripts/grpo_curve.py BASE.pt SEED OUT.jsonl [--steps 50] [--lr 1e-4] [--beta 0.02]
        [--prompts 16] [--group 8] [--threads 1] [--save PATH] [--tag NAME]
"""
import argparse, json, time, copy
import torch
from toyds.train.checkpoint import load_checkpoint
from toyds.tasks.registry import make_task
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.rl import reward_registry
from toyds.evaluate.accuracy import evaluate
ap = argparse.ArgumentParser()
ap.add_argument("base"); ap.add_argument("seed", type=int); ap.add_argument("out")
ap.add_argument("--steps", type=int, default=50); ap.add_argument("--lr", type=float, default=1e-4)
ap.add_argument("--prompts", type=int, default=16); ap.add_argument("--group", type=int, default=8)
ap.add_argument("--threads", type=int, default=1); ap.add_argument("--every", type=int, default=10)
ap.add_argument("--beta", type=float, default=0.02); ap.add_argument("--tag", default="")
ap.add_argument("--loss", default="grpo"); ap.add_argument("--save", default=None)
a = ap.parse_args()
torch.set_num_threads(a.threads)
task = make_task("arithmetic")
test = task.sample(300, "test", unique=True)
rl = task.sample(5000, "rl", seed=a.seed + 1)
base, _, _ = load_checkpoint(a.base, "cpu")
policy = copy.deepcopy(base)
def ev(m):
    g = evaluate(m, task, test)
    return {"acc": round(g["accuracy"], 3), "by": {k: round(v["accuracy"], 3) for k, v in g["by_difficulty"].items()},
            "think": round(g["think_rate"], 3), "fmt": round(g["format_rate"], 3)}
cfg = GRPOConfig(steps=a.steps, prompts_per_step=a.prompts, group_size=a.group, lr=a.lr, beta=a.beta,
                 max_new_tokens=task.completion_cap(), seed=a.seed, eval_every=a.every, loss_type=a.loss)
fns, w = reward_registry.resolve(reward_registry.R1, task)
t0 = time.perf_counter()
h = train_grpo(policy, rl, cfg, reward_fns=fns, reward_weights=w, measure_fn=task.measure, eval_fn=ev, progress=False)
secs = time.perf_counter() - t0
curve = [{"step": r["step"], "think_s": round(r.get("think_rate", -1), 3), **{k[5:]: v for k, v in r.items() if k.startswith("eval_")}} for r in h if "eval_acc" in r]
row = {"tag": a.tag, "base": a.base, "seed": a.seed, "args": vars(a), "final": curve[-1], "curve": curve, "seconds": secs}
print(json.dumps({"tag": a.tag, "seed": a.seed, "final": curve[-1], "seconds": round(secs)}))
if a.save:
    from toyds.train.checkpoint import save_checkpoint
    save_checkpoint(a.save, policy, meta={"stage": "r1_zero"})
with open(a.out, "a") as f:
    f.write(json.dumps(row) + "\n")
