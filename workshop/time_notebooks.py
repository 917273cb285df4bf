"""Time the workshop's notebooks on this machine, the way the teacher's guide reports them.

    python workshop/time_notebooks.py                 # every notebook at its workshop size
    python workshop/time_notebooks.py --quick         # ... at its quick size (TOYDS_QUICK=1)
    python workshop/time_notebooks.py notebooks/03_r1_zero.ipynb

Runs each notebook top to bottom in a fresh kernel (nbclient, from the dev extra), in a
temporary folder, and prints one line per notebook: the wall time and the 1-minute load
average before and after (a load above the core count means other work shared the
machine, and the time is not the notebook's alone). Try it on a participant's laptop
before the day: a laptop that takes more than twice the guide's times should use the
quick size. Nothing is written into the notebooks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="notebooks to time (default: every one in notebooks/)")
    ap.add_argument("--quick", action="store_true", help="the quick size (sets TOYDS_QUICK=1 for the kernels)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds a cell may take before the run is stopped")
    args = ap.parse_args(argv)
    import nbformat
    from nbclient import NotebookClient

    os.environ["TOYDS_QUICK"] = "1" if args.quick else "0"
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    total = 0.0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        load_before, t0 = os.getloadavg()[0], time.perf_counter()
        with tempfile.TemporaryDirectory() as work:  # whatever the notebook writes (runs/...) lands here
            NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                           resources={"metadata": {"path": work}}).execute()
        seconds = time.perf_counter() - t0
        total += seconds
        print(f"{path.name:<28} {'quick' if args.quick else 'workshop'} size: {seconds:6.1f} s   "
              f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    print(f"{'total':<28} {total:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
