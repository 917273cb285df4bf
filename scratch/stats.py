import itertools, random, collections
def fam(nums, orders, ops1, ops2):
    out = []
    perms = [tuple(nums)] if orders == "given" else sorted(set(itertools.permutations(nums)))
    for x, y, z in perms:
        for o1 in ops1:
            if orders != "given" and o1 in "+x" and x < y: continue
            r = {"+": x + y, "-": x - y, "x": x * y}[o1]
            if r < 0: continue
            for o2 in ops2:
                s = {"+": r + z, "-": r - z, "x": r * z}[o2]
                if s < 0: continue
                out.append(((x, o1, y, o2, z), s))
    return out
rng = random.Random(0)
for name, kw in [("A given +-x,+-", ("given", "+-x", "+-")), ("B given +-x,+-x", ("given", "+-x", "+-x")), ("C any +-x,+-", ("any", "+-x", "+-"))]:
    sols, sizes, tries = collections.Counter(), [], []
    for _ in range(5000):
        nums = [rng.randint(1, 9) for _ in range(3)]
        f = fam(nums, *kw)
        if not f: continue
        t = rng.choice(f)[1]
        k = sum(v == t for _, v in f)
        sols[min(k, 4)] += 1; sizes.append(len(f)); tries.append((len(f) + 1) / (k + 1))
    print(name, "family size", sum(sizes)/len(sizes), "solutions", sorted(sols.items()), "E tries", sum(tries)/len(tries))
