"""Wall time of the app's first run: the default set ("Train the default set" on an empty models
root) trained as the button trains it, from the start to the last checkpoint (issue 15; target ≤ 5
min on 2 cores).

    python benchmarks/default_set.py /tmp/defset                 # one job per core (what the app does)
    python benchmarks/default_set.py /tmp/defset-seq --sequential # one job, runs one after another

ROOT must be empty or absent (the runs are written there). Prints the split, the wall time and each
run's dev accuracy and training seconds (the numbers ``background.DEFAULT_COST`` holds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from advviz import background


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--sequential", action="store_true", help="one job for the whole set (the earlier behaviour)")
    args = ap.parse_args()
    root = Path(args.root)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    runs = background.default_suite(root)
    t0 = time.time()
    if args.sequential:
        print("one job:", [r.name for r in runs], flush=True)
        jobs = [background.start(root, runs)]
    else:
        print("jobs:", [[r.name for r in g] for g in background.split_runs(runs, 2)], flush=True)
        jobs = background.start_parallel(root, runs)
    while any(background.status(root, j)["state"] == "running" for j in jobs):
        time.sleep(2)
    print("states:", [background.status(root, j)["state"] for j in jobs])
    print(f"wall {time.time() - t0:.0f} s")
    for r in runs:
        m = json.loads((root / r.name / "metrics.json").read_text())
        print(f"  {r.name}: dev accuracy {m['dev_accuracy']:.4f}, train {m.get('train_seconds', 0):.0f} s")


if __name__ == "__main__":
    main()
