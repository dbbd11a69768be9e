#!/usr/bin/env bash
# The default set over seeds (docs/results.md §12, issue 29): each method of the app's default set
# trained with exactly what `advviz train --method M` resolves on the default family (GloVe-LSTM,
# sst2-sent, 3 epochs), plus --eval-every 50 so that the dev curve (and the stall mark) has a
# point every 50 steps; then a table of dev accuracy (mean ± std), where each run left chance,
# and which runs stalled. Two runs side by side, one thread each (as the app's first run).
#
#   OUT=models/default-seeds SEEDS="0 1 2 3 4" benchmarks/default_set_seeds.sh
#   EXTRA="--lr 2e-3" METHODS="baseline freelb" OUT=models/lr2e-3 benchmarks/default_set_seeds.sh   # the old private lr
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-models/default-seeds}
SEEDS=${SEEDS:-"0 1 2 3 4"}
METHODS=${METHODS:-"baseline spgd freelb carl rar"}
EXTRA=${EXTRA:-}
JOBS=${JOBS:-2}
ADVVIZ=${ADVVIZ:-advviz}
mkdir -p "$OUT"

runs=()
for s in $SEEDS; do for m in $METHODS; do runs+=("$m-s$s"); done; done
train_one() {
    local name=$1 m=${1%-s*} s=${1##*-s}
    if [ -f "$OUT/$name/metrics.json" ] && grep -q total_steps "$OUT/$name/metrics.json"; then return 0; fi
    local resume=""; [ -e "$OUT/$name" ] && resume="--resume"  # an interrupted run continues
    OMP_NUM_THREADS=1 $ADVVIZ train --dataset sst2-sent --arch lstm --method "$m" --seed "$s" --eval-every 50 \
        $EXTRA --out "$OUT/$name" --quiet $resume > "$OUT/$name.log" 2>&1 || { echo "$name failed: $(tail -1 "$OUT/$name.log")"; return 1; }
    echo "$name: $(tail -1 "$OUT/$name.log")"
}
export -f train_one; export OUT EXTRA ADVVIZ
printf '%s\n' "${runs[@]}" | xargs -P "$JOBS" -I{} bash -c 'train_one {}'

python - "$OUT" <<'PY'
import json, statistics as st, sys
from pathlib import Path
from advviz.evaluate import chance_record, majority_share
from advviz.data import load_dataset

root = Path(sys.argv[1])
maj = majority_share(load_dataset("sst2-sent", "dev").labels)
by = {}
for d in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
    m = json.loads((d / "metrics.json").read_text())
    log = [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()]
    rec = chance_record(log, maj, m["total_steps"])
    method, seed = d.name.rsplit("-s", 1)
    by.setdefault(method, []).append((int(seed), m["dev_accuracy"], rec["left_chance_at_step"], rec["stalled"]))
print(f"majority share of sst2-sent dev: {maj:.4f}; a run is at chance while dev accuracy <= {maj + 0.02:.4f}")
print("| method | dev accuracy, mean ± std | per seed | left chance at step (of 651) | stalled |")
print("|---|---|---|---|---|")
for method, rows in by.items():
    rows.sort()
    acc = [100 * a for _, a, _, _ in rows]
    sd = st.stdev(acc) if len(acc) > 1 else 0.0
    print(f"| {method} | {st.mean(acc):.2f} ± {sd:.2f} | {' / '.join(f'{a:.2f}' for a in acc)} | "
          f"{' / '.join(str(l) for _, _, l, _ in rows)} | {sum(s for *_, s in rows)} of {len(rows)} |")
PY
