import itertools, collections, statistics
ap = lambda a, o, b: a + b if o == "+" else a - b if o == "-" else a * b
def fam(nums):
    out = {}
    for x, y, z in itertools.permutations(nums):
        if x < y: continue
        for o1 in "+-x":
            for o2 in "+x":
                v = ap(ap(x, o1, y), o2, z)
                out[(x, o1, y, o2, z)] = v
    return out
probs = []
for n in itertools.product(range(1, 10), repeat=3):
    f = fam(n)
    for t in sorted({v for v in f.values() if 0 <= v <= 9}):
        sols = [c for c, v in f.items() if v == t]
        # heads that the search opens: + with t-z>=0, x with t % z == 0
        heads = {(o2, z) for (x, o1, y, o2, z) in f if (o2 == "+" and t - z >= 0) or (o2 == "x" and t % z == 0)}
        probs.append((n, t, len(sols), len(f), len(heads)))
print("problems", len(probs))
print("levels", collections.Counter(min(k, 3) for *_, k, _, _ in probs))
print("family", statistics.mean(f for *_, f, _ in probs), "heads opened", statistics.mean(h for *_, h in probs))
