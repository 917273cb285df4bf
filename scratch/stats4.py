import itertools, random, collections, statistics
ap = lambda a, o, b: a + b if o == "+" else a - b if o == "-" else a * b
def fam_given(nums, o1s, o2s):
    x, y, z = nums
    return [((x,o1,y,o2,z), ap(ap(x,o1,y),o2,z)) for o1 in o1s for o2 in o2s if ap(x,o1,y) >= 0 and ap(ap(x,o1,y),o2,z) >= 0]
def fam_any(nums, o1s, o2s):
    out = {}
    for x, y, z in itertools.permutations(nums):
        if x < y: continue
        for o1 in o1s:
            for o2 in o2s:
                v = ap(ap(x,o1,y),o2,z)
                if v >= 0: out[(x,o1,y,o2,z)] = v
    return list(out.items())
def chained_len(c, v):
    x,o1,y,o2,z = c; r = ap(x,o1,y)
    return len(f"{x}{o1}{y}={r}{o2}{z}={v} no;")
def stats(name, fam, mx):
    rng = random.Random(0); by = collections.defaultdict(list); sizes = []
    n = 0
    while n < 3000:
        nums = tuple(rng.randint(1, mx) for _ in range(3)); f = fam(nums)
        vals = sorted({v for _, v in f}); t = rng.choice(vals)
        k = sum(v == t for _, v in f); lv = min(k, 3)
        per = statistics.mean(chained_len(c, v) for c, v in f)
        by[lv].append(((len(f)+1)/(k+1), per * (len(f)+1)/(k+1))); sizes.append(len(f)); n += 1
    share = {lv: round(len(v)/n, 2) for lv, v in sorted(by.items())}
    toks = {lv: round(statistics.mean(t for _, t in v)) for lv, v in sorted(by.items())}
    tries = {lv: round(statistics.mean(t for t, _ in v), 1) for lv, v in sorted(by.items())}
    print(f"{name:28s} fam {statistics.mean(sizes):4.1f} share {share} tries {tries} tokens {toks}")
for mx in (4, 5, 9):
    stats(f"given +-x,+-x max{mx}", lambda n: fam_given(n, "+-x", "+-x"), mx)
    stats(f"given +-x,+- max{mx}", lambda n: fam_given(n, "+-x", "+-"), mx)
    stats(f"any +-x,+- max{mx}", lambda n: fam_any(n, "+-x", "+-"), mx)
    stats(f"any +x,+- max{mx}", lambda n: fam_any(n, "+x", "+-"), mx)
    stats(f"any +-x,+ max{mx}", lambda n: fam_any(n, "+-x", "+"), mx)
