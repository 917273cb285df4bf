import itertools, random, collections
def fam(nums, ops1, ops2):
    out = {}
    for x, y, z in itertools.permutations(nums):
        for o1 in ops1:
            if x < y: continue
            r = {"+": x + y, "-": x - y, "x": x * y}[o1]
            for o2 in ops2:
                s = {"+": r + z, "-": r - z}[o2]
                if s < 0: continue
                e = f"{x}{o1}{y}={r},{r}{o2}{z}={s} no;"
                out[(x, o1, y, o2, z)] = (s, len(e))
    return list(out.items())
for hi in (9, 6):
  for ops1 in ("+-x", "+x"):
    rng = random.Random(0)
    sols, sizes, tries, toks = collections.Counter(), [], [], []
    for _ in range(5000):
        nums = [rng.randint(1, hi) for _ in range(3)]
        f = fam(nums, ops1, "+-")
        vals = sorted({v for _, (v, _) in f})
        t = rng.choice(vals)   # target uniform over reachable values
        k = sum(v == t for _, (v, _) in f)
        sols[min(k, 4)] += 1; sizes.append(len(f)); e = (len(f) + 1) / (k + 1); tries.append(e)
        toks.append(e * sum(l for _, (_, l) in f) / len(f))
    print(hi, ops1, "family", round(sum(sizes)/len(sizes),1), "solutions", sorted(sols.items()), "E tries", round(sum(tries)/len(tries),2), "E tokens", round(sum(toks)/len(toks)))
