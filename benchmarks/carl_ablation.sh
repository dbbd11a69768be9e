#!/usr/bin/env bash
# Which part of CARL costs accuracy on the default family (GloVe-50d LSTM, sst2-sent)? Each variant
# changes one choice against the default CARL run; FreeLB is the reference; three seeds each.
#
#   benchmarks/carl_ablation.sh            # -> $OUT/ablation.json (one line per run) and a table
#   SEEDS="0 1" EPOCHS=2 benchmarks/carl_ablation.sh
#
# Environment: OUT (default models/carl-ablation), SEEDS ("0 1 2"), EPOCHS (3), MAX_TRAIN (all).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-models/carl-ablation}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-3}
mkdir -p "$OUT"
declare -A VARIANTS=(
  [freelb]="--method freelb"
  [carl]="--method carl"
  [carl-tau0.5]="--method carl --tau 0.5"
  [carl-w0.1]="--method carl --carl-weight 0.1"
  [carl-start67]="--method carl --carl-start 67%"
  [carl-infonce]="--method carl --carl-loss infonce"
  [carl-live]="--method carl --carl-positive live"
  [carl-start67-w0.1]="--method carl --carl-start 67% --carl-weight 0.1"
)
ORDER=(freelb carl carl-tau0.5 carl-w0.1 carl-start67 carl-infonce carl-live carl-start67-w0.1)
for seed in $SEEDS; do
  for v in "${ORDER[@]}"; do
    dir="$OUT/$v-s$seed"
    # an interrupted run has a metrics.json (its best step so far) and a resume state beside it: continue it
    resume=""
    [[ -d "$OUT/.$v-s$seed.resume" ]] && resume="--resume"
    if [[ ! -f "$dir/metrics.json" || -n "$resume" ]]; then
      echo "== $v seed $seed $resume"
      # shellcheck disable=SC2086
      advviz train --dataset sst2-sent --arch lstm --epochs "$EPOCHS" --seed "$seed" ${MAX_TRAIN:+--max-train $MAX_TRAIN} \
        ${VARIANTS[$v]} --out "$dir" --quiet $resume
    fi
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for d in sorted(out.iterdir()):
    m = d / "metrics.json"
    if m.is_file():
        v, seed = d.name.rsplit("-s", 1)
        rows.setdefault(v, []).append((int(seed), json.loads(m.read_text())))
print("| variant | seeds | best dev acc (mean ± std) | per seed | L_D steps |")
print("|---|---|---|---|---|")
for v, runs in rows.items():
    accs = [r["dev_accuracy"] for _, r in sorted(runs)]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    ld = [str((r.get("carl") or {}).get("ld_steps", "–")) for _, r in sorted(runs)]
    print(f"| {v} | {len(accs)} | {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} | "
          f"{' / '.join(f'{100 * a:.2f}' for a in accs)} | {' / '.join(ld)} |")
PY
