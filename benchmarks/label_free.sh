#!/usr/bin/env bash
# The label-free adversaries' evidence in docs/results.md §8 (issue 14), stage by stage:
#
#   benchmarks/label_free.sh semi      # lstm on sst2-sent with 10 % of the labels: baseline, vat, uae x SEEDS
#   benchmarks/label_free.sh augment   # baseline and rar; augmentation files (spgd moved_to, rar reconstructions,
#                                      # uae moved_to); the baseline retrained on each x SEEDS; clean and k-PGD accuracy
#   benchmarks/label_free.sh heatmap   # uae vs pgd per-token norms on the same sentences (inspect --json)
#
# Environment: OUT (default models/label-free), SEEDS ("0 1 2"), FRACTION (0.1), EPOCHS (15: 22 steps an
# epoch at 10 % of sst2-sent), ADVVIZ (the command, default `advviz`), FORCE=1 retrains what exists.
# Checkpoints land under $OUT (git-ignored); results as $OUT/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-semi}
OUT=${OUT:-models/label-free}
SEEDS=${SEEDS:-"0 1 2"}
FRACTION=${FRACTION:-0.1}
EPOCHS=${EPOCHS:-15}
ADVVIZ=${ADVVIZ:-advviz}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

train() {  # train DIR [advviz-train flags...]
  local dir=$1; shift
  if [[ -f "$dir/metrics.json" && -z "${FORCE:-}" ]]; then echo "exists: $dir"; return; fi
  echo "== train $dir $*"
  $ADVVIZ train --dataset sst2-sent --arch lstm --out "$dir" --quiet ${FORCE:+--overwrite} "$@"
}

evaluate() {  # evaluate DIR -> DIR/eval-test.json (clean test accuracy and k-PGD at several ε)
  local dir=$1
  if [[ -f "$dir/eval-test.json" && -z "${FORCE:-}" ]]; then return; fi
  $ADVVIZ eval "$dir" --split test --attack pgd --eps 0.1,0.5,1.0 --json > "$OUT/.eval.tmp" && mv "$OUT/.eval.tmp" "$dir/eval-test.json"
}

case "$STAGE" in
semi)
  for s in $SEEDS; do
    for m in baseline vat uae; do
      train "$OUT/semi-$m-f$FRACTION-s$s" --method "$m" --seed "$s" --labeled-fraction "$FRACTION" --epochs "$EPOCHS"
      $ADVVIZ eval "$OUT/semi-$m-f$FRACTION-s$s" --split test --json > "$OUT/semi-$m-f$FRACTION-s$s.test.json"
    done
  done
  ;;
augment)
  train "$OUT/base-s0" --method baseline --seed 0
  train "$OUT/rar-s0" --method rar --seed 0
  [[ -f "$OUT/aug-spgd.tsv" && -z "${FORCE:-}" ]] || $ADVVIZ augment "$OUT/base-s0" --attack spgd --out "$OUT/aug-spgd.tsv" --quiet
  [[ -f "$OUT/aug-uae.tsv" && -z "${FORCE:-}" ]] || $ADVVIZ augment "$OUT/base-s0" --attack uae --token-share 0.25 --out "$OUT/aug-uae.tsv" --quiet
  [[ -f "$OUT/aug-rar.tsv" && -z "${FORCE:-}" ]] || $ADVVIZ augment "$OUT/rar-s0" --attack pgd --epsilon 1.0 --text-form reconstructed --out "$OUT/aug-rar.tsv" --quiet
  # the files come from the seed-0 models; the retraining is repeated for every seed in SEEDS
  for s in $SEEDS; do
    train "$OUT/base-s$s" --method baseline --seed "$s"
    for a in spgd uae rar; do
      train "$OUT/base-aug-$a-s$s" --method baseline --seed "$s" --augment "$OUT/aug-$a.tsv"
    done
    for d in base-s$s base-aug-spgd-s$s base-aug-uae-s$s base-aug-rar-s$s; do evaluate "$OUT/$d"; done
  done
  ;;
heatmap)
  $ADVVIZ inspect "$OUT/base-s0" --input benchmarks/label_free_sentences.txt --attack uae --json > "$OUT/inspect-uae.json"
  $ADVVIZ inspect "$OUT/base-s0" --input benchmarks/label_free_sentences.txt --attack pgd --epsilon 0.4 --json > "$OUT/inspect-pgd.json"
  ;;
*) echo "unknown stage $STAGE (semi | augment | heatmap)"; exit 2 ;;
esac
