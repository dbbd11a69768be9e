#!/usr/bin/env bash
# docs/results.md §11: TextAttack's discrete attacks on the LSTM methods (sst2-sent dev), the overlap of
# their edits with the embedding adversary's top-3 tokens, and examples/s per recipe on the LSTM and MiniLM.
#
#   benchmarks/textattack_table.sh                 # needs the extra: make setup-textattack (runs in .venv-textattack)
#
# Checkpoints: the LSTM set of `benchmarks/reproduce.sh lstm` (OUT, default models/repro: baseline advt spgd
# freelb carl rar, seed 0), plus lstm carl+rar and a MiniLM baseline (2,000 training sentences, 1 epoch),
# trained here when missing (into $OUT). Results: $OUT/textattack/*.json and the table on stdout.
# Environment: OUT, N (examples attacked, default 500), MINILM_N (default 100), RECIPES ("deepwordbug
# textfooler-glove"; textfooler-cf and pwws run offline too), OVERLAP (the embedding attack for the overlap
# statistic, default spgd). Attack speed alone: benchmarks/textattack_speed.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-models/repro}
N=${N:-500}
MINILM_N=${MINILM_N:-100}
RECIPES=${RECIPES:-deepwordbug textfooler-glove}
OVERLAP=${OVERLAP:-spgd}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BIN=${BIN:-.venv-textattack/bin}
[[ -x "$BIN/advviz" ]] || { echo "no $BIN/advviz: run make setup-textattack (or set BIN)" >&2; exit 2; }
mkdir -p "$OUT/textattack"

[[ -f "$OUT/lstm-sst2-sent-baseline-s0/model.safetensors" ]] || OUT="$OUT" benchmarks/reproduce.sh lstm
[[ -f "$OUT/lstm-sst2-sent-carl+rar-s0/model.safetensors" ]] || \
  "$BIN/advviz" train --dataset sst2-sent --arch lstm --method carl+rar --epochs 3 --out "$OUT/lstm-sst2-sent-carl+rar-s0" --quiet

run() {  # run DIR N RECIPE
  local f="$OUT/textattack/$(basename "$1")-$3.json"
  [[ -s "$f" ]] && { echo "exists: $f"; return; }
  echo "== $(basename "$1") textattack:$3 on $2 examples"
  "$BIN/advviz" eval "$1" --attack "textattack:$3" --max-examples "$2" --overlap "$OVERLAP" \
    --per-example "${f%.json}.jsonl" --json > "$f.tmp"
  mv "$f.tmp" "$f"
}
for m in baseline advt spgd freelb carl rar carl+rar; do
  for r in $RECIPES; do run "$OUT/lstm-sst2-sent-$m-s0" "$N" "$r"; done
done
[[ -f "$OUT/minilm-sst2-sent-baseline-s0/model.safetensors" ]] || \
  "$BIN/advviz" train --dataset sst2-sent --arch minilm --method baseline --max-train 2000 --epochs 1 \
    --out "$OUT/minilm-sst2-sent-baseline-s0" --quiet
for r in $RECIPES; do run "$OUT/minilm-sst2-sent-baseline-s0" "$MINILM_N" "$r"; done

"$BIN/python" - "$OUT/textattack" <<'PY'
import json, sys
from pathlib import Path
from scipy.stats import binomtest
d = Path(sys.argv[1])
rows = [json.loads(p.read_text()) | {"file": p.stem} for p in sorted(d.glob("*.json"))]
f = lambda v, k=4: "–" if v is None else f"{v:.{k}f}"

def robust(stem):  # source index -> the model still right after the attack (TextAttack's "failed")
    p = d / f"{stem}.jsonl"
    return {r["source_index"]: r["result"] == "failed" for r in map(json.loads, p.open())} if p.exists() else None

print("| checkpoint | recipe | n | clean acc | acc under attack | vs baseline (McNemar p) | success rate | queries | "
      "perturbed words | swaps in top-3 ‖δ‖ (chance) | examples/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    a = r["attacks"][0]; o = a.get("overlap") or {}
    name = Path(r["model"]).name
    vs = "–"
    base = robust(f"lstm-sst2-sent-baseline-s0-{a['recipe']}") if name.startswith("lstm-") and "-baseline-" not in name \
        else None
    mine = robust(r["file"])
    if base and mine:
        b = sum(mine[i] and not base[i] for i in mine)  # robust here, broken on the baseline
        c = sum(base[i] and not mine[i] for i in mine)
        vs = f"{b - c:+d} ({binomtest(b, b + c).pvalue:.2g})" if b + c else "±0"
    print(f"| {name} | {a['recipe']} | {a['n']} | {f(a['clean_accuracy'])} | {f(a['accuracy'])} | {vs} | "
          f"{f(a['attack_success_rate'])} | {f(a['mean_queries'], 1)} | {f(a['perturbed_word_share'])} | "
          f"{f(o.get('share'), 3)} ({f(o.get('chance_share'), 3)}) | {f(a['examples_per_second'], 2)} |")
PY
