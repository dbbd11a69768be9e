"""Side-by-side per-token heatmap of two attacks on the same sentences, from `advviz inspect --json`
output (benchmarks/label_free.sh heatmap writes them), as markdown for docs/results.md §8.

    python benchmarks/label_free_heatmap.py models/label-free/inspect-uae.json models/label-free/inspect-pgd.json

For each sentence: one row per token with ‖δᵢ‖ of each attack as a bar (█ per eighth of the
sentence's largest norm over both attacks) and each attack's moved_to word; then, over all
sentences, how concentrated each attack is (share of ‖δ‖² on the top token and on the top quarter
of tokens) and how often the prediction flips.
"""

from __future__ import annotations

import json
import math
import sys


def _load(path):
    data = json.loads(open(path, encoding="utf-8").read())
    return data if isinstance(data, list) else [data]


def _bar(v: float, top: float) -> str:
    n = 0 if top <= 0 else round(8 * v / top)
    return "█" * n or "·"


def _concentration(tokens) -> tuple[float, float]:
    sq = sorted((t["norm"] ** 2 for t in tokens), reverse=True)
    total = sum(sq) or 1.0
    q = max(1, math.ceil(len(sq) / 4))
    return sq[0] / total, sum(sq[:q]) / total


def main(a_path: str, b_path: str) -> None:
    A, B = _load(a_path), _load(b_path)
    na, nb = A[0]["attack"]["name"], B[0]["attack"]["name"]
    print(f"{na}: {', '.join(f'{k} {v}' for k, v in A[0]['attack'].items() if k != 'name')}  \n"
          f"{nb}: {', '.join(f'{k} {v}' for k, v in B[0]['attack'].items() if k != 'name')}\n")
    stats = {na: [], nb: []}
    for ra, rb in zip(A, B):
        assert ra["text"] == rb["text"]
        top = max([t["norm"] for t in ra["tokens"]] + [t["norm"] for t in rb["tokens"]])
        print(f"**{ra['text']}** — prediction {ra['pred']}; {na} → {ra['adv_pred']}, {nb} → {rb['adv_pred']}\n")
        print(f"| token | ‖δ‖ {na} | | moved_to | ‖δ‖ {nb} | | moved_to |")
        print("|---|---:|:--|---|---:|:--|---|")
        for ta, tb in zip(ra["tokens"], rb["tokens"]):
            print(f"| {ta['token']} | {ta['norm']:.3f} | {_bar(ta['norm'], top)} | {ta['moved_to'] or '-'} "
                  f"| {tb['norm']:.3f} | {_bar(tb['norm'], top)} | {tb['moved_to'] or '-'} |")
        print()
        for name, r in ((na, ra), (nb, rb)):
            stats[name].append((*_concentration(r["tokens"]), r["adv_pred"] != r["pred"]))
    print(f"| attack | share of ‖δ‖² on the top token | on the top quarter of tokens | predictions flipped |")
    print("|---|---:|---:|---:|")
    for name, rows in stats.items():
        n = len(rows)
        print(f"| {name} | {sum(r[0] for r in rows) / n:.2f} | {sum(r[1] for r in rows) / n:.2f} | "
              f"{sum(r[2] for r in rows)}/{n} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
