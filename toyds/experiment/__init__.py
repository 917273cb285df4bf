"""What every example and benchmark does the same way, so the scripts stay about their idea.

    flags.py    --device, --threads, --seed, --seeds, --jobs, --out; argparse types that name bad values
    output.py   setup (threads, seed, device and --out checked first), write_json, metrics.json
    seeds.py    --seeds N: each seed's run, mean +- std and range, claims held on k of n
    plots.py    pictures with matplotlib, or the same figures as text without it
    tables.py   docs/results/'s tables, written from the runs' own metrics.json
"""
