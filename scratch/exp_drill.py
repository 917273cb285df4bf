"""Can the model learn the verdict at all? Train on check drills only, test on held-out drills."""
import argparse, time, random, torch
from toyds import countdown as cd
from toyds.model import GPT, make_config
from toyds.train import TrainConfig, train_supervised
from toyds.sampling import generate
from toyds.tokenizer import Tokenizer
ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="tiny"); ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--lr", type=float, default=1e-2); ap.add_argument("--layers", type=int, default=None)
ap.add_argument("--canonical", action="store_true"); ap.add_argument("--fmt", default="vs"); ap.add_argument("--max-target", type=int, default=20); ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(1)
def check_pad(self, target):
    need = self.need(target); w = lambda n: f"{n:>2}"
    return f"{self.x}{self.op1}{self.y}={w(self.inner)} vs {w(need)} {'ok' if self.inner == need else 'no'}"
def check_zero(self, target):
    need = self.need(target); w = lambda n: f"{n:02d}"
    return f"{self.x}{self.op1}{self.y}={w(self.inner)} vs {w(need)} {'ok' if self.inner == need else 'no'}"
if a.fmt == "pad": cd.Candidate.check = check_pad
if a.fmt == "zero": cd.Candidate.check = check_zero; torch.manual_seed(a.seed)
kw = {"n_layer": a.layers} if a.layers else {}
m = GPT(make_config(a.preset, block_size=192, **kw))
rng = random.Random(a.seed)
pre = cd.sample_problems(20000, seed=a.seed, levels=('1', '2'), max_target=a.max_target)
drills = [cd.check_drill(p, rng, not a.canonical) for p in pre]
tok = Tokenizer()
test = [cd.check_drill(p, random.Random(i), not a.canonical) for i, p in enumerate(cd.sample_problems(600, split="test", levels=("1", "2"), max_target=a.max_target))]
def score():
    g = generate(m, [tok.encode(q) for q, _ in test], 3, temperature=0.0)
    return sum(t.startswith(c) for t, (_, c) in zip(g.texts, test)) / len(test)
t0 = time.perf_counter()
hist = train_supervised(m, drills, TrainConfig.recipe(a.steps, a.lr, 32, a.seed, progress=False, length_buckets=8, eval_every=a.steps // 5), eval_fn=lambda mm: {"drill_acc": score()})
print(vars(a), f"{time.perf_counter()-t0:.0f}s", [(h["step"], round(h["drill_acc"], 3)) for h in hist])
