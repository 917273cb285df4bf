"""Do context-free compare drills ('13 vs 13' -> ' ok') teach the verdict of trace drills?"""
import argparse, time, random, torch
from toyds import countdown as cd
from toyds.model import GPT, make_config
from toyds.train import TrainConfig, train_supervised
from toyds.sampling import generate
from toyds.tokenizer import Tokenizer
ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="tiny"); ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--lr", type=float, default=1e-2); ap.add_argument("--mix", type=float, default=1.0); ap.add_argument("--batch", type=int, default=32)
a = ap.parse_args()
torch.set_num_threads(1); torch.manual_seed(0)
m = GPT(make_config(a.preset, block_size=192))
rng = random.Random(0)
def cmp_drill(rng):
    v = rng.choice([rng.randint(0, 20), rng.randint(0, 81)])
    r = rng.random()
    if r < 0.5: w = v
    elif r < 0.7: w = max(0, v + rng.choice([-1, 1]))
    elif r < 0.85: w = (v // 10) * 10 + rng.randint(0, 9)   # same tens
    else: w = rng.randint(0, 20)
    return f"<bos>{v} vs {w}", " ok" if v == w else " no"
pre = cd.sample_problems(20000)
data = [cmp_drill(rng) if rng.random() < a.mix else cd.check_drill(p, rng, False) for p in pre]
tok = Tokenizer()
test = [cd.check_drill(p, random.Random(i), False) for i, p in enumerate(cd.sample_problems(600, split="test"))]
ctest = [cmp_drill(random.Random(10**6 + i)) for i in range(600)]
def acc(ts):
    g = generate(m, [tok.encode(q) for q, _ in ts], 3, temperature=0.0)
    return round(sum(t.startswith(c) for t, (_, c) in zip(g.texts, ts)) / len(ts), 3)
t0 = time.perf_counter()
hist = train_supervised(m, data, TrainConfig.recipe(a.steps, a.lr, a.batch, 0, progress=False, length_buckets=8, eval_every=a.steps // 5), eval_fn=lambda mm: {"trace": acc(test), "cmp": acc(ctest)})
print(vars(a), f"{time.perf_counter()-t0:.0f}s", [(h["step"], h["cmp"], h["trace"]) for h in hist])
