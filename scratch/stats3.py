import random, collections, statistics
import toyds.countdown as cd
from toyds.tokenizer import Tokenizer
tok = Tokenizer()
for mx in (5, 6, 9):
  for ops1 in (("+","-","x"), ("+","x")):
    cd.OPS1 = ops1
    ps = cd.sample_problems(600, seed=0, max_number=mx)
    rng = random.Random(0)
    L = collections.defaultdict(list); fam = []
    for p in ps:
        c = cd.search_completion(p, rng)
        L[p.difficulty].append(len(tok.encode(c))); fam.append(len(cd.family(p.numbers)))
    allL = sum(L.values(), [])
    print(mx, "".join(ops1), "family", round(statistics.mean(fam),1), {k: round(statistics.mean(v)) for k, v in L.items()}, "mean", round(statistics.mean(allL)), "p95", sorted(allL)[int(.95*len(allL))], "max", max(allL))
