"""docs/results.md §15: accuracy under word-substitution attacks, per method and seed, with exact
McNemar tests on the same sentences.

    python benchmarks/substitution_table.py OUT [ARCH]   # OUT as benchmarks/substitution_bar.sh writes it
                                                          # ARCH: lstm (default) or minilm

Reads ``OUT/lstm-METHOD-sSEED/metrics.json`` (clean dev accuracy of the best checkpoint) and, per
recipe, ``OUT/RECIPE/lstm-METHOD-sSEED.json`` + ``.jsonl`` (``advviz eval --attack textattack:RECIPE
--per-example``). An example *survives* when TextAttack's search failed (the model was right and
stayed right); accuracy under attack is survivals / attacked. "vs baseline" and "vs freelb" pair
each seed's model with the same seed's reference on the same sentences (eval's seeded subset is
the same for every model), pool the discordant pairs over seeds, and give the exact two-sided
binomial (McNemar) p.
"""

from __future__ import annotations

import json
import statistics
import sys
from math import comb
from pathlib import Path


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def survivals(path: Path) -> dict[int, bool]:
    """source_index -> survived, for one per-example file."""
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[r.get("source_index", r["index"])] = r["result"] == "failed"
    return out


def main(out: Path, arch: str = "lstm") -> None:
    clean = {}
    for d in sorted(out.glob(f"{arch}-*-s*")):
        m = d / "metrics.json"
        if m.is_file():
            method, seed = d.name[len(arch) + 1:].rsplit("-s", 1)
            clean[(method, int(seed))] = json.loads(m.read_text())["dev_accuracy"]
    for rdir in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(f"{arch}-")):
        runs = {}
        for f in sorted(rdir.glob(f"{arch}-*-s*.jsonl")):
            if not f.with_suffix(".json").is_file():
                continue  # still running (its .json is written last)
            method, seed = f.stem[len(arch) + 1:].rsplit("-s", 1)
            runs[(method, int(seed))] = (survivals(f), json.loads(f.with_suffix(".json").read_text()))
        if not runs:
            continue
        print(f"\n### {rdir.name}\n")
        print("| method | seeds | clean dev acc (best ckpt) | clean acc on the attacked | acc under attack (per seed) "
              "| mean | vs baseline: net (p) | vs freelb: net (p) | success rate | perturbed words |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        methods = sorted({m for m, _ in runs}, key=lambda m: (m != "baseline", m != "freelb", m))
        for method in methods:
            seeds = sorted(s for m, s in runs if m == method)
            accs = [runs[(method, s)][1]["attacks"][0]["accuracy"] for s in seeds]
            cleans = [runs[(method, s)][1]["attacks"][0]["clean_accuracy"] for s in seeds]
            succ = [runs[(method, s)][1]["attacks"][0]["attack_success_rate"] for s in seeds]
            pert = [runs[(method, s)][1]["attacks"][0]["perturbed_word_share"] for s in seeds]
            dev = [clean.get((method, s)) for s in seeds]
            cells = []
            for ref in ("baseline", "freelb"):
                if method == ref:
                    cells.append("–")
                    continue
                b = c = 0
                paired = 0
                for s in seeds:
                    if (ref, s) not in runs:
                        continue
                    mine, theirs = runs[(method, s)][0], runs[(ref, s)][0]
                    for i in mine.keys() & theirs.keys():
                        b += mine[i] and not theirs[i]
                        c += theirs[i] and not mine[i]
                    paired += 1
                cells.append(f"{b - c:+d} ({mcnemar_p(b, c):.2g}; {paired} seeds)" if paired else "n/a")
            sd = f" ± {100 * statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
            devs = " / ".join("–" if d is None else f"{100 * d:.1f}" for d in dev)
            print(f"| {method} | {', '.join(map(str, seeds))} | {devs} | "
                  f"{' / '.join(f'{100 * a:.1f}' for a in cleans)} | {' / '.join(f'{100 * a:.1f}' for a in accs)} | "
                  f"{100 * statistics.mean(accs):.1f}{sd} | {cells[0]} | {cells[1]} | "
                  f"{statistics.mean(succ):.3f} | {statistics.mean(pert):.3f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "models/substitution-bar"), sys.argv[2] if len(sys.argv) > 2 else "lstm")
