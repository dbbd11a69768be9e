#!/usr/bin/env bash
# Issue 28's bar (docs/results.md, the substitution section): on the GloVe-50d LSTM, sst2-sent, three
# seeds, does ASCC or DNE keep its label under synonym swaps (textattack:textfooler-cf over Jia et
# al.'s counter-fitted sets) ≥ 20 points more often than the baseline and ≥ 10 more than FreeLB, within
# 3 points of the baseline's clean accuracy?
#
#   benchmarks/substitution_bar.sh train     # the 12 runs (one at a time, nice -n 10) and their clean dev accuracy
#   benchmarks/substitution_bar.sh attack    # + textfooler-cf on the same 500 dev sentences (needs the
#                                            #   textattack extra: make setup-textattack; BIN=.venv-textattack/bin)
#   benchmarks/substitution_bar.sh table     # the clean accuracy table from what is there
#   python benchmarks/substitution_table.py OUT   # the attack tables with McNemar tests (docs/results.md §15)
#
# Environment: OUT (default models/substitution-bar), SEEDS ("0 1 2"), EPOCHS (3), METHODS
# ("baseline freelb ascc dne"), N (examples attacked, 500), BIN (the advviz to run; default .venv/bin),
# ARCH (lstm; minilm for the subset table: ARCH=minilm EXTRA="--max-train 2000" SEEDS=0 N=200),
# EXTRA (more train flags, the same for every method), METHOD_ARGS_<method> (flags for one method).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-train}
OUT=${OUT:-models/substitution-bar}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-3}
ARCH=${ARCH:-lstm}
EXTRA=${EXTRA:-}
METHODS=${METHODS:-baseline freelb ascc dne}
N=${N:-500}
SEED0_RECIPES=${SEED0_RECIPES:-deepwordbug pwws}   # the other recipes, on seed 0 only
BIN=${BIN:-.venv/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

if [[ "$WHAT" == train || "$WHAT" == attack ]]; then
  for seed in $SEEDS; do
    for m in $METHODS; do
      dir="$OUT/$ARCH-$m-s$seed"
      resume=""
      [[ -d "$OUT/.$ARCH-$m-s$seed.resume" ]] && resume="--resume"
      extra_m="METHOD_ARGS_$m"
      if [[ ! -f "$dir/metrics.json" || -n "$resume" ]]; then
        echo "== $m seed $seed $resume"
        nice -n 10 "$BIN/advviz" train --dataset sst2-sent --arch "$ARCH" --method "$m" --epochs "$EPOCHS" \
          --seed "$seed" --out "$dir" --quiet $resume $EXTRA ${!extra_m:-}
      fi
    done
  done
fi

if [[ "$WHAT" == attack ]]; then
  attack() {  # attack METHOD SEED RECIPE
    local f="$OUT/$3/$ARCH-$1-s$2.json"
    mkdir -p "$OUT/$3"
    [[ -s "$f" ]] && { echo "exists: $f"; return; }
    echo "== $1 seed $2 textattack:$3 on $N examples"
    nice -n 10 "$BIN/advviz" eval "$OUT/$ARCH-$1-s$2" --attack "textattack:$3" --max-examples "$N" \
      --per-example "${f%.json}.jsonl" --json > "$f.tmp"
    mv "$f.tmp" "$f"
  }
  for seed in $SEEDS; do for m in $METHODS; do attack "$m" "$seed" textfooler-cf; done; done
  for r in $SEED0_RECIPES; do for m in $METHODS; do attack "$m" 0 "$r"; done; done
fi

"$BIN/python" - "$OUT" "$ARCH" <<'PY'
import json, statistics, sys
from pathlib import Path
out, arch = Path(sys.argv[1]), sys.argv[2]
rows = {}
for d in sorted(out.glob(f"{arch}-*-s*")):
    m = d / "metrics.json"
    if m.is_file():
        method, seed = d.name[len(arch) + 1:].rsplit("-s", 1)
        rows.setdefault(method, []).append((int(seed), json.loads(m.read_text())))
print("| method | seeds | best dev acc (mean ± std) | per seed |")
print("|---|---|---|---|")
for method, runs in rows.items():
    accs = [r["dev_accuracy"] for _, r in sorted(runs)]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"| {method} | {len(accs)} | {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} | "
          f"{' / '.join(f'{100 * a:.2f}' for a in accs)} |")
PY
